"""The fast path of usage validation (Arrow kernels) decides every record exactly as the
checking query does: the same outcome, resolved values, period, field and reason.

Each test checks one chunk twice, with ``fast=True`` and ``fast=False`` (every record through
the query, the definition), and compares the decided tables row by row. The records include
the forms the fast path must leave to the query: spaces and other trimmable characters, other
time and quantity spellings, impossible dates, closed and future periods, day cycles,
customers instead of subscriptions, properties, corrections, repeats.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from quote2cash.usage.duck import connection
from quote2cash.usage.reading import rows_chunk
from quote2cash.usage.terms import MeteredItem, SubscriptionTerms
from quote2cash.usage.validation import LatePolicy, _fast_rows, check_chunk, reference_tables

NOW = datetime(2026, 4, 1, 12, tzinfo=UTC)


def _terms() -> list[SubscriptionTerms]:
    def sub(name: str, anchor: datetime, refs: Sequence[str], **kw: object) -> SubscriptionTerms:
        items = kw.pop(
            "items",
            (
                MeteredItem("api_calls", "call", ("api_calls", f"price_{name}")),
                MeteredItem("storage", "GB", ("storage", " padded")),
            ),
        )
        return SubscriptionTerms(
            subscription=name,
            references=tuple(refs),
            customer=f"cus_{name}",
            subject=f"contract:{name}",
            items=items,  # type: ignore[arg-type]
            service_start=kw.pop("start", anchor),  # type: ignore[arg-type]
            service_end=kw.pop("end", None),  # type: ignore[arg-type]
            cycle_anchor=anchor,
            **kw,  # type: ignore[arg-type]
        )

    return [
        sub("sub_1", datetime(2026, 1, 15, tzinfo=UTC), ["C-1", "sub_1"]),
        sub(
            "sub_2",
            datetime(2025, 1, 31, 10, 30, tzinfo=UTC),
            ["C-2", "sub_2"],
            closed_before=datetime(2026, 2, 28, 10, 30, tzinfo=UTC),
        ),
        sub("sub_3", datetime(2024, 2, 29, tzinfo=UTC), ["C-3"], interval="year"),
        sub(
            "sub_4",
            datetime(2026, 1, 1, tzinfo=UTC),
            ["C-4", " C-4s"],
            interval="month",
            interval_count=3,
            end=datetime(2026, 3, 10, tzinfo=UTC),
        ),
        sub("sub_5", datetime(2026, 1, 10, tzinfo=UTC), ["C-5"], interval="day", interval_count=7),
        sub(
            "sub_6",
            datetime(2026, 3, 20, tzinfo=UTC),
            ["C-6"],
            start=datetime(2026, 3, 25, tzinfo=UTC),
            on_test_clock=True,
            closed_before=datetime(2026, 3, 20, tzinfo=UTC),
        ),
    ]


SUBSCRIPTIONS = ["C-1", "sub_2", "C-3", "C-4", "C-5", "C-6", "C-404", "c-1", " C-1"]
METERS = ["api_calls", "storage", "price_sub_1", "padded", " padded", "nope", "API_CALLS"]
QUANTITIES = [
    "1",
    "0",
    "12.5",
    "007",
    "1.123456789012",
    "1.1234567890123",
    "-1",
    "1e3",
    "abc",
    "1.",
    ".5",
    " 2",
    "+3",
    "99999999999999999999999",
]
UNITS = [None, "call", "CALL", "GB", "gb", "", " call", "bytes"]
TIMES = [
    "2026-03-20T10:00:00Z",
    "2026-02-28T10:29:59Z",
    "2026-02-28T10:30:00Z",
    "2026-01-31T23:59:59Z",
    "2026-02-29T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2024-02-29T12:00:00Z",
    "2026-03-09T23:59:59Z",
    "2026-03-10T00:00:00Z",
    "2026-04-02T11:59:59Z",
    "2026-04-02T12:00:01Z",
    "2026-04-19T00:00:00Z",
    "2026-03-26T00:00:00Z",
    "2026-03-20T24:00:00Z",
    "2026-03-20T10:00:60Z",
    "2026-03-20T10:00:00z",
    "2026-03-20T10:00:00.5Z",
    "2026-03-20T10:00:00+00:00",
    "2026-03-20T12:00:00+02:00",
    "2026-03-20 10:00:00Z",
    "1774000000",
    "2026-03-20T10:00:00",
    "2025-12-31T23:59:59Z",
    " 2026-03-20T10:00:00Z",
    "2026-1-5T10:00:00Z",
    "0999-01-01T00:00:00Z",
]


IMPOSSIBLE = {"2026-02-29T00:00:00Z", "2026-02-30T00:00:00Z"}
PLAIN_TIMES = [t for t in TIMES if t.endswith(":00Z") or t.endswith("9Z")]


def _records(seed: int, count: int) -> list[dict[str, object]]:
    """Mostly plain records (so the fast path takes many), each field odd now and then."""
    rng = random.Random(seed)

    def pick(plain: Sequence[object], odd: Sequence[object]) -> object:
        return rng.choice(plain) if rng.random() < 0.85 else rng.choice(odd)

    rows: list[dict[str, object]] = []
    for n in range(count):
        row: dict[str, object] = {
            "id": pick([f"r{n}", f"r{n % 3000}"], [f" r{n}", f"r{n}\u00a0", f"r{n}\t", ""]),
            "subscription": pick(["C-1", "sub_2", "C-3", "C-4", "C-6"], SUBSCRIPTIONS),
            "meter": pick(["api_calls", "storage", "price_sub_1"], METERS),
            "quantity": pick(["1", "0", "12.5", "007", "1.123456789012"], QUANTITIES),
            "unit": pick([None, "call", "GB"], UNITS),
            "timestamp": pick(PLAIN_TIMES, TIMES),
        }
        roll = rng.random()
        if roll < 0.03:
            row["properties"] = rng.choice([{"region": "eu"}, "[1]"])
        elif roll < 0.05:
            row["correction"] = rng.choice([True, "yes", "no"])
        elif roll < 0.08:
            row["customer"] = rng.choice(["cus_sub_1", " cus_sub_1", "x"])
        elif roll < 0.1:
            del row["subscription"]
            row["customer"] = "cus_sub_1"
        rows.append(row)
    return rows


def _decide(
    chunk: pa.Table, policy: LatePolicy, fast: bool, history: dict[int, int], corrections: bool
) -> list[dict[str, object]]:
    def lookup(keys: pa.Array) -> pa.Array:
        return pa.array([history.get(k) for k in keys.to_pylist()], pa.uint64())

    con = connection()
    try:
        reference_tables(con, _terms())
        decided = check_chunk(
            con,
            chunk,
            source="meter",
            policy=policy,
            now=NOW,
            lookup=lookup,
            corrections=corrections,
            fast=fast,
        )
        return decided.to_pylist()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("policy", "corrections", "impossible_day"),
    [("adjust", False, True), ("reject", True, True), ("adjust", False, False)],
)
def test_fast_path_decides_every_record_as_the_checking_query(
    policy: LatePolicy, corrections: bool, impossible_day: bool
) -> None:
    """With an impossible day (February 30) in the chunk, times are parsed by ``strptime``;
    without, by Arrow's ISO 8601 cast: both paths are compared."""
    rows = _records(seed=16, count=6000)
    if not impossible_day:
        rows = [r for r in rows if r.get("timestamp") not in IMPOSSIBLE]
    # every spelling of a time and quantity at least once with a plain record around it
    for t, q in itertools.product(
        [t for t in TIMES if impossible_day or t not in IMPOSSIBLE], QUANTITIES
    ):
        rows.append(
            {
                "id": f"x{t}{q}",
                "subscription": "sub_2",
                "meter": "api_calls",
                "quantity": q,
                "unit": "call",
                "timestamp": t,
            }
        )
    chunk = rows_chunk(rows)
    # history: some keys accepted before with the same content, some with other content
    slow_first = _decide(chunk, policy, False, {}, corrections)
    history: dict[int, int] = {}
    for i, row in enumerate(slow_first):
        if row["key"] is not None and i % 5 == 0:
            history[row["key"]] = row["content"] if i % 10 == 0 else row["content"] ^ 1
    slow = _decide(chunk, policy, False, history, corrections)
    fast = _decide(chunk, policy, True, history, corrections)
    assert len(fast) == len(slow) == len(rows)
    assert any(r.get("timestamp") in IMPOSSIBLE for r in rows) == impossible_day
    for a, b in zip(fast, slow, strict=True):
        assert a == b
    outcomes = {r["outcome"] for r in slow}
    con = connection()
    try:
        reference_tables(con, _terms())
        mask, _ = _fast_rows(con, chunk, policy=policy, limit=datetime(2026, 4, 2, 12))
    finally:
        con.close()
    assert sum(mask.to_pylist()) > 300  # the fast path was tried on many records
    assert {"accepted", "duplicate", "quarantined", "conflict_batch"} <= outcomes
    assert any(r["adjusted"] for r in slow if r["outcome"] == "accepted") == (policy == "adjust")


def test_fast_path_takes_the_plain_records_and_leaves_the_rest() -> None:
    plain = {
        "id": "a1",
        "subscription": "C-1",
        "meter": "api_calls",
        "quantity": "2",
        "unit": "call",
        "timestamp": "2026-03-20T10:00:00Z",
    }
    others = [
        {**plain, "id": " a2"},  # a space to trim
        {**plain, "id": "a3", "unit": "CALL"},  # unit in another case
        {**plain, "id": "a4", "timestamp": "2026-03-20T10:00:00.5Z"},  # a fraction
        {**plain, "id": "a5", "quantity": "-1"},  # fails a check
        {**plain, "id": "a8", "properties": {"k": 1}},  # properties
    ]
    day_cycle = {**plain, "id": "a7", "subscription": "C-5"}  # periods of 7 days: fast too
    chunk = rows_chunk([plain, {**plain, "id": "a9", "unit": None}, day_cycle, *others])
    con = connection()
    try:
        reference_tables(con, _terms())
        mask, _ = _fast_rows(con, chunk, policy="adjust", limit=datetime(2026, 4, 2, 12))
    finally:
        con.close()
    assert mask.to_pylist() == [True, True, True] + [False] * len(others)


def test_a_chunk_of_only_plain_records_is_decided_alike() -> None:
    """No record for the query at all: the fast path's table stands alone."""
    rows = [
        {
            "id": f"p{i}",
            "subscription": "C-1",
            "meter": "api_calls",
            "quantity": str(i),
            "unit": "call" if i % 2 else None,
            "timestamp": "2026-03-20T10:00:00Z",
        }
        for i in range(100)
    ]
    chunk = rows_chunk(rows)
    history = {}
    first = _decide(chunk, "adjust", False, {}, False)
    history[first[0]["key"]] = first[0]["content"]
    fast = _decide(chunk, "adjust", True, history, False)
    assert fast == _decide(chunk, "adjust", False, history, False)
    assert [r["outcome"] for r in fast[:2]] == ["duplicate", "accepted"]


WHOLE_QUANTITIES = [
    "3",
    "007",
    "123456789012345678",
    "1234567890123456789",
    "\u0663",
    "1\u0663",
    "",
]
"""Whole numbers only (no chunk-wide fraction): the fast path's digit check and its cast
through int64 up to 18 digits; non-ASCII digits and the empty text are the query's."""
SAME_LENGTH_TIMES = [
    "2026-03-20T10:00:00Z",
    "2026-03-20T1O:00:00Z",
    "2026/03/20T10:00:00Z",
    "2026-03-20t10:00:00Z",
    "2026-03-20 10:00:00Z",
    "2026-03-20T10:00:00z",
    "0026-03-20T10:00:00Z",
    "2026-13-20T10:00:00Z",
    "2026-03-20T10:00:0\u00e9",
    "2026-03-20T10-00-00Z",
    "+026-03-20T10:00:00Z",
    "2026-03-2010:00:00ZZ",
]
"""Times of the plain form's length (20) that are not all plain: Arrow's parser decides the
digits and separators the fast path does not look at."""


@pytest.mark.parametrize("policy", ["adjust", "reject"])
def test_whole_quantities_and_times_of_the_plain_length_are_decided_alike(
    policy: LatePolicy,
) -> None:
    rows = [
        {
            "id": f"w{i}",
            "subscription": "C-1",
            "meter": "api_calls",
            "quantity": q,
            "unit": "call",
            "timestamp": t,
        }
        for i, (q, t) in enumerate(
            itertools.product(WHOLE_QUANTITIES, ["2026-03-20T10:00:00Z", *SAME_LENGTH_TIMES])
        )
    ]
    for plain_times, within_int64 in itertools.product((True, False), (True, False)):
        part = [
            r
            for r in rows
            if (r["timestamp"] == SAME_LENGTH_TIMES[0]) == plain_times
            and (len(str(r["quantity"])) <= 18 or not within_int64)
        ]
        chunk = rows_chunk(part)
        fast = _decide(chunk, policy, True, {}, False)
        assert fast == _decide(chunk, policy, False, {}, False)
    decided = _decide(rows_chunk(rows), policy, True, {}, False)
    assert decided == _decide(rows_chunk(rows), policy, False, {}, False)
    accepted = {(r["rid"], str(r["q"])) for r in decided if r["outcome"] == "accepted"}
    assert ("w0", "3.000000000000") in accepted
    assert any(q == "1234567890123456789.000000000000" for _, q in accepted)
    quantity_of = {r["id"]: r["quantity"] for r in rows}
    assert {quantity_of[rid] for rid, _ in accepted}.isdisjoint({"\u0663", "1\u0663", ""})


def test_a_trimmed_id_repeating_a_plain_one_is_a_repeat_in_the_chunk() -> None:
    """Every plain key distinct, but a record the query takes (an id with spaces) has the
    key of a plain record once trimmed: a repeat within the chunk, as the query decides."""
    plain = {
        "subscription": "C-1",
        "meter": "api_calls",
        "quantity": "2",
        "unit": "call",
        "timestamp": "2026-03-20T10:00:00Z",
    }
    rows = [{**plain, "id": f"d{i}"} for i in range(50)]
    rows += [{**plain, "id": " d7 "}, {**plain, "id": "d9 ", "quantity": "3"}]
    rows += [{**plain, "id": " e1"}, {**plain, "id": "e1 "}]
    chunk = rows_chunk(rows)
    fast = _decide(chunk, "adjust", True, {}, False)
    assert fast == _decide(chunk, "adjust", False, {}, False)
    assert [r["outcome"] for r in fast[50:]] == [
        "duplicate",
        "conflict_batch",
        "accepted",
        "duplicate",
    ]


def test_a_reference_of_two_subscriptions_is_resolved_by_the_meter_or_quarantined() -> None:
    """A reference naming two subscriptions is ambiguous: quarantined with a reason naming
    the record, the field and what is expected, unless exactly one of them has the record's
    meter; one row per record either way, the same with and without the fast path."""
    shared = [
        *_terms()[:1],
        SubscriptionTerms(
            subscription="sub_9",
            references=("C-9", "C-1"),
            customer="cus_9",
            subject="contract:C-9",
            items=(MeteredItem("api_calls", "call", ("api_calls",)),),
            service_start=datetime(2026, 1, 15, tzinfo=UTC),
            service_end=None,
            cycle_anchor=datetime(2026, 1, 15, tzinfo=UTC),
        ),
    ]
    rows = [
        {
            "id": f"s{i}",
            "subscription": "C-9" if i % 2 else "C-1",
            "meter": "storage" if i % 4 == 2 else "api_calls",
            "quantity": "1",
            "unit": "GB" if i % 4 == 2 else "call",
            "timestamp": "2026-03-20T10:00:00Z",
        }
        for i in range(10)
    ]
    chunk = rows_chunk(rows)
    decided = {}
    for fast in (True, False):
        con = connection()
        try:
            reference_tables(con, shared)
            decided[fast] = check_chunk(
                con,
                chunk,
                source="meter",
                policy="adjust",
                now=NOW,
                lookup=lambda keys: pa.nulls(len(keys), pa.uint64()),
                fast=fast,
            ).to_pylist()
        finally:
            con.close()
    assert decided[True] == decided[False]
    assert [r["rid"] for r in decided[True]] == [f"s{i}" for i in range(10)]
    for i, row in enumerate(decided[True]):
        if i % 2:  # C-9 names sub_9 only
            assert (row["outcome"], row["sub"]) == ("accepted", "sub_9")
        elif i % 4 == 2:  # only sub_1 of the two meters storage
            assert (row["outcome"], row["sub"], row["meter"]) == ("accepted", "sub_1", "storage")
        else:
            assert row["outcome"] == "quarantined" and row["field"] == "subscription"
            assert row["reason"] == (
                f"record 's{i}': field 'subscription' is 'C-1': it names 2 subscriptions, "
                "2 of them with meter 'api_calls', 2 in service at 2026-03-20T10:00:00Z: "
                "expected the hub id or billing subscription id of one subscription"
            )


def test_a_contract_whose_subscription_was_replaced_goes_by_the_time() -> None:
    """Two billing subscriptions of one contract with the same meter, the first ended when
    the second started: a record goes to the one in service at its time; outside both, or
    in both, it is quarantined."""

    def sub(name: str, start: datetime, end: datetime | None) -> SubscriptionTerms:
        return SubscriptionTerms(
            subscription=name,
            references=("C-7", name),
            customer="cus_7",
            subject="contract:C-7",
            items=(MeteredItem("api_calls", "call", ("api_calls",)),),
            service_start=start,
            service_end=end,
            cycle_anchor=start,
        )

    feb = datetime(2026, 2, 1, tzinfo=UTC)
    terms = [sub("sub_old", datetime(2025, 6, 1, tzinfo=UTC), feb), sub("sub_new", feb, None)]
    times = ["2026-01-31T23:59:59Z", "2026-02-01T00:00:00Z", "2026-03-20T10:00:00Z"]
    times += ["2025-05-31T00:00:00Z", "2026-01-10T10:00:00+01:00"]
    rows = [
        {
            "id": f"t{i}",
            "subscription": "C-7",
            "meter": "api_calls",
            "quantity": "1",
            "timestamp": t,
        }
        for i, t in enumerate(times)
    ]
    decided = {}
    for fast in (True, False):
        con = connection()
        try:
            reference_tables(con, terms)
            decided[fast] = check_chunk(
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
    assert decided[True] == decided[False]
    got = [(r["outcome"], r["sub"]) for r in decided[False]]
    assert got == [
        ("accepted", "sub_old"),
        ("accepted", "sub_new"),
        ("accepted", "sub_new"),
        ("quarantined", None),
        ("accepted", "sub_old"),
    ]
    assert decided[False][3]["reason"] == (
        "record 't3': field 'subscription' is 'C-7': it names 2 subscriptions, 2 of them with "
        "meter 'api_calls', 0 in service at 2025-05-31T00:00:00Z: expected the hub id or "
        "billing subscription id of one subscription"
    )


def test_a_meter_alias_naming_two_items_of_a_subscription_is_quarantined() -> None:
    """Two metered items of one subscription share a name (their product): a record giving
    that name is ambiguous, one row, quarantined; the items' own names are accepted."""
    terms = [
        SubscriptionTerms(
            subscription="sub_8",
            references=("C-8",),
            customer="cus_8",
            subject="contract:C-8",
            items=(
                MeteredItem("api_calls", "call", ("api_calls", "prod_api")),
                MeteredItem("api_calls_eu", "call", ("api_calls_eu", "prod_api")),
            ),
            service_start=datetime(2026, 1, 15, tzinfo=UTC),
            service_end=None,
            cycle_anchor=datetime(2026, 1, 15, tzinfo=UTC),
        )
    ]
    rows = [
        {"id": f"m{i}", "subscription": "C-8", "meter": meter, "quantity": "1"}
        | {"timestamp": "2026-03-20T10:00:00Z"}
        for i, meter in enumerate(["prod_api", "api_calls", "api_calls_eu"])
    ]
    decided = {}
    for fast in (True, False):
        con = connection()
        try:
            reference_tables(con, terms)
            decided[fast] = check_chunk(
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
    assert decided[True] == decided[False]
    got = [(r["outcome"], r["meter"], r["field"]) for r in decided[False]]
    assert got[1:] == [("accepted", "api_calls", None), ("accepted", "api_calls_eu", None)]
    assert got[0][0] == "quarantined" and got[0][2] == "meter"
    assert decided[False][0]["reason"] == (
        "record 'm0': field 'meter' is 'prod_api': it names 2 of subscription 'sub_8's metered "
        "items: expected one of api_calls, api_calls_eu"
    )
