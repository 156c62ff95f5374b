"""One billing period per usage timestamp, whoever computes it.

The checking query (every record through it: ``fast=False``), the fast path (``fast=True``),
``SubscriptionTerms.period_of`` and billing's own rule (the Stripe emulator's
``billing_engine.add_interval``, Stripe's: months clip to the month's last day and return to
the anchor's day) must give the same period for every timestamp, for day, week, month,
quarter and year cycles, anchors on the 1st, 15th and 28th-31st, leap years, and times one
second either side of each period boundary.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quote2cash.sandbox.stripe.billing_engine import add_interval
from quote2cash.usage.duck import connection
from quote2cash.usage.reading import rows_chunk
from quote2cash.usage.terms import MeteredItem, SubscriptionTerms
from quote2cash.usage.validation import _fast_rows, check_chunk, reference_tables

NOW = datetime(2100, 1, 1, tzinfo=UTC)
CYCLES = [("day", 1), ("day", 3), ("week", 1), ("week", 2), ("month", 1), ("month", 3)]
CYCLES += [("year", 1)]
ANCHORS = [
    datetime(2023, 1, 1, tzinfo=UTC),
    datetime(2023, 1, 15, 8, 0, 5, tzinfo=UTC),
    datetime(2023, 1, 28, tzinfo=UTC),
    datetime(2023, 1, 29, 23, 59, 59, tzinfo=UTC),
    datetime(2023, 1, 30, 12, tzinfo=UTC),
    datetime(2023, 1, 31, 10, 30, tzinfo=UTC),
    datetime(2023, 8, 31, tzinfo=UTC),
    datetime(2023, 12, 29, tzinfo=UTC),
    datetime(2024, 2, 29, 6, tzinfo=UTC),
    datetime(2024, 3, 31, tzinfo=UTC),
]


def _terms(name: str, anchor: datetime, interval: str, count: int) -> SubscriptionTerms:
    return SubscriptionTerms(
        subscription=name,
        references=(name,),
        customer=None,
        subject=f"contract:{name}",
        items=(MeteredItem("api_calls", "call", ("api_calls",)),),
        service_start=anchor,
        service_end=None,
        cycle_anchor=anchor,
        interval=interval,
        interval_count=count,
    )


ALL = [
    _terms(f"s{i}", anchor, interval, count)
    for i, (anchor, (interval, count)) in enumerate(itertools.product(ANCHORS, CYCLES))
]


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _times(terms: SubscriptionTerms, rng: random.Random) -> list[datetime]:
    """Each boundary of the first periods and one second either side, and random seconds."""
    periods = 40 if terms.cycle_days else 30
    out: list[datetime] = []
    for k in range(periods):
        b = terms.boundary(k)
        out += [b, b + timedelta(seconds=1), b - timedelta(seconds=1)] if k else [b]
    span = int((terms.boundary(periods) - terms.cycle_anchor).total_seconds())
    out += [terms.cycle_anchor + timedelta(seconds=rng.randrange(span)) for _ in range(40)]
    return out


def _decide(rows: list[dict[str, object]], fast: bool) -> list[dict[str, object]]:
    con = connection()
    try:
        reference_tables(con, ALL)
        return check_chunk(
            con,
            rows_chunk(rows),
            source="meter",
            policy="adjust",
            now=NOW,
            lookup=lambda keys: pa.nulls(len(keys), pa.uint64()),
            fast=fast,
        ).to_pylist()
    finally:
        con.close()


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def test_query_fast_path_and_terms_give_every_timestamp_the_same_period() -> None:
    rng = random.Random(16)
    rows: list[dict[str, object]] = []
    expected: list[tuple[datetime, datetime]] = []
    for terms in ALL:
        for at in _times(terms, rng):
            # a plain time (the fast path may take it) and the same instant with an offset
            # (always the query's)
            for stamp in (_stamp(at), at.strftime("%Y-%m-%dT%H:%M:%S+00:00")):
                rows.append(
                    {
                        "id": f"{terms.subscription}-{len(rows)}",
                        "subscription": terms.subscription,
                        "meter": "api_calls",
                        "quantity": "1",
                        "timestamp": stamp,
                    }
                )
                start, end = terms.period_of(at)
                assert start <= at < end
                expected.append((_naive(start), _naive(end)))
    slow = _decide(rows, fast=False)
    fast = _decide(rows, fast=True)
    assert fast == slow
    con = connection()
    try:
        reference_tables(con, ALL)
        taken, _ = _fast_rows(con, rows_chunk(rows), policy="adjust", limit=_naive(NOW))
    finally:
        con.close()
    assert sum(taken.to_pylist()) == len(rows) // 2  # the fast path took every plain time
    wrong = [
        (row["rid"], rows[i]["timestamp"], (row["period_start"], row["period_end"]), expected[i])
        for i, row in enumerate(slow)
        if row["outcome"] != "accepted" or (row["period_start"], row["period_end"]) != expected[i]
    ]
    assert wrong == []


@pytest.mark.parametrize("anchor", ANCHORS)
@pytest.mark.parametrize(("interval", "count"), CYCLES)
def test_terms_periods_are_billings_periods(anchor: datetime, interval: str, count: int) -> None:
    """Billing's k-th period runs from add_interval(anchor, k) to add_interval(anchor, k + 1);
    ``period_of`` gives exactly that period from its first to its last second."""
    terms = _terms("s", anchor, interval, count)
    epoch = int(anchor.timestamp())
    for k in range(60):
        start = datetime.fromtimestamp(add_interval(epoch, k, interval, count), UTC)
        end = datetime.fromtimestamp(add_interval(epoch, k + 1, interval, count), UTC)
        assert terms.period_of(start) == (start, end)
        assert terms.period_of(end - timedelta(seconds=1)) == (start, end)
        assert terms.boundary(k) == start


def test_month_end_anchor_returns_to_its_day() -> None:
    """The issue's case: an anchor on Jan 31 gives Feb 28 - Mar 31, not Feb 28 - Mar 28."""
    terms = _terms("s", datetime(2026, 1, 31, tzinfo=UTC), "month", 1)
    feb = datetime(2026, 3, 15, tzinfo=UTC)
    assert terms.period_of(feb) == (
        datetime(2026, 2, 28, tzinfo=UTC),
        datetime(2026, 3, 31, tzinfo=UTC),
    )
    [row] = _decide(
        [
            {
                "id": "r1",
                "subscription": f"s{5 * len(CYCLES) + CYCLES.index(('month', 1))}",  # Jan 31
                "meter": "api_calls",
                "quantity": "1",
                "timestamp": "2023-03-30T00:00:00Z",
            }
        ],
        fast=False,
    )
    assert (row["period_start"], row["period_end"]) == (
        datetime(2023, 2, 28, 10, 30),
        datetime(2023, 3, 31, 10, 30),
    )


@settings(max_examples=150, deadline=None)
@given(
    anchor=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    cycle=st.sampled_from(CYCLES),
    offset=st.integers(min_value=0, max_value=8 * 366 * 86400),
)
def test_any_anchor_and_time_fall_in_billings_period(
    anchor: datetime, cycle: tuple[str, int], offset: int
) -> None:
    """For any anchor (whole seconds, as billing's) and any later second, ``period_of``
    gives the add_interval period that holds it."""
    anchor = anchor.replace(microsecond=0)
    interval, count = cycle
    terms = _terms("s", anchor, interval, count)
    at = anchor + timedelta(seconds=offset)
    start, end = terms.period_of(at)
    epoch = int(anchor.timestamp())
    k = 0
    while add_interval(epoch, k + 1, interval, count) <= int(at.timestamp()):
        k += 1
    assert int(start.timestamp()) == add_interval(epoch, k, interval, count)
    assert int(end.timestamp()) == add_interval(epoch, k + 1, interval, count)
