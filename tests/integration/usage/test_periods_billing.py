"""Usage periods agree with the periods billing itself runs (the Stripe emulator, driven by the
official SDK on a test clock): a subscription anchored on a month's last days is advanced
period by period, and at each step the usage period that intake gives a record (the checking
query and its fast path) and ``SubscriptionTerms.period_of``, from the very snapshot billing
sent, are billing's current period, to the second either side of its ends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
import stripe

from quote2cash.connectors.stripe.config import SANDBOX_API_KEY
from quote2cash.sandbox.stripe import StripeEmulator
from quote2cash.usage.duck import connection
from quote2cash.usage.reading import rows_chunk
from quote2cash.usage.terms import SubscriptionTerms, terms_from_snapshot
from quote2cash.usage.validation import check_chunk, reference_tables


@pytest.fixture(scope="module")
def sdk() -> Iterator[stripe.StripeClient]:
    running = StripeEmulator()
    base_url, stop = running.start_in_thread()
    try:
        yield stripe.StripeClient(
            api_key=SANDBOX_API_KEY, base_addresses={"api": base_url}, max_network_retries=0
        )
    finally:
        stop()


def _subscription(
    sdk: stripe.StripeClient, start: datetime, interval: str, count: int
) -> tuple[str, str]:
    meter = sdk.v1.billing.meters.create(
        params={
            "display_name": "api_calls",
            "event_name": f"api_calls_{start:%Y%m%d%H%M}_{interval}{count}",
            "default_aggregation": {"formula": "sum"},
        }
    )
    product = sdk.v1.products.create(params={"name": "API calls"})
    price = sdk.v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount_decimal": "0.37",
            "recurring": {
                "interval": interval,
                "interval_count": count,
                "usage_type": "metered",
                "meter": meter.id,
            },
        }
    )
    clock = sdk.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(start.timestamp())}
    ).id
    customer = sdk.v1.customers.create(
        params={
            "name": "Month End GmbH",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
            "test_clock": clock,
        }
    )
    sub = sdk.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}]}
    )
    return sub.id, clock


def _snapshot(sdk: stripe.StripeClient, sub: str) -> dict[str, Any]:
    found: dict[str, Any] = sdk.v1.subscriptions.retrieve(sub).to_dict()
    return found


def _current(snapshot: dict[str, Any]) -> tuple[datetime, datetime]:
    item = snapshot["items"]["data"][0]
    start = item.get("current_period_start") or snapshot["current_period_start"]
    end = item.get("current_period_end") or snapshot["current_period_end"]
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def _intake_periods(
    terms: SubscriptionTerms, times: list[datetime], fast: bool
) -> list[tuple[datetime, datetime]]:
    rows = [
        {
            "id": f"r{i}",
            "subscription": terms.subscription,
            "meter": terms.items[0].meter,
            "quantity": "1",
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for i, at in enumerate(times)
    ]
    con = connection()
    try:
        reference_tables(con, [terms])
        decided = check_chunk(
            con,
            rows_chunk(rows),
            source="meter",
            policy="reject",
            now=datetime(2100, 1, 1, tzinfo=UTC),
            lookup=lambda keys: pa.nulls(len(keys), pa.uint64()),
            fast=fast,
        ).to_pylist()
    finally:
        con.close()
    assert [r["outcome"] for r in decided] == ["accepted"] * len(rows), decided
    return [
        (r["period_start"].replace(tzinfo=UTC), r["period_end"].replace(tzinfo=UTC))
        for r in decided
    ]


@pytest.mark.parametrize(
    ("start", "interval", "count"),
    [
        (datetime(2026, 1, 31, 10, 30, tzinfo=UTC), "month", 1),
        (datetime(2027, 12, 30, tzinfo=UTC), "month", 1),  # through Feb 29, 2028
        (datetime(2026, 1, 29, 23, 59, 59, tzinfo=UTC), "month", 1),
        (datetime(2025, 11, 30, 12, tzinfo=UTC), "month", 3),
        (datetime(2024, 2, 29, 6, tzinfo=UTC), "year", 1),
        (datetime(2026, 1, 31, 10, 30, tzinfo=UTC), "week", 2),
    ],
)
def test_usage_periods_are_billings_periods(
    sdk: stripe.StripeClient, start: datetime, interval: str, count: int
) -> None:
    sub, clock = _subscription(sdk, start, interval, count)
    steps = 4 if interval == "year" else 8
    seen: list[tuple[datetime, datetime]] = []
    for _ in range(steps):
        snapshot = _snapshot(sdk, sub)
        period = _current(snapshot)
        seen.append(period)
        terms = terms_from_snapshot(snapshot, None, None)
        assert terms is not None
        terms = replace(terms, closed_before=None)  # every period open: none refused
        second = timedelta(seconds=1)
        times = [period[0], period[0] + second, period[1] - second]
        expected = [period] * 3
        if len(seen) > 1:  # the last second of the period before, as billing had it
            times.append(period[0] - second)
            expected.append(seen[-2])
        assert [terms.period_of(t) for t in times] == expected
        assert _intake_periods(terms, times, fast=False) == expected
        assert _intake_periods(terms, times, fast=True) == expected
        sdk.v1.test_helpers.test_clocks.advance(
            clock, params={"frozen_time": int(period[1].timestamp())}
        )
    if interval == "month" and start.day >= 29:  # billing returned to the anchor's day
        assert any(end.day == start.day for _, end in seen[1:])
        assert any(end.day < start.day for _, end in seen)
