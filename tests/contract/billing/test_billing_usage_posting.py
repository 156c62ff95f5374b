"""Posting usage aggregates (``Billing.post_usage``), reading back what billing counted per period
(``usage_counted``) and the metered invoice lines it billed (``usage_lines``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from quote2cash.canonical import Money
from quote2cash.connectors.roles import Billing, UsagePosting
from quote2cash.engine.errors import DataError, TransientError
from support.engine_layer import EngineLayer

from .harness import T0, BillingHarness, subscription_for

FEB = T0 + timedelta(days=31)


async def _metered(
    billing: Billing, harness: BillingHarness, unit_minor: str = "0.5"
) -> tuple[str, str]:
    """A subscription to a metered price, its customer on a test clock at T0."""
    price = harness.metered_price("api_calls", unit_minor)
    clock = harness.start_clock()
    customer = harness.customer_with_card(clock=clock)
    created = await billing.create_subscription(
        subscription_for(customer, [(price, None)]), idempotency_key="evt-1:subscribe"
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    return sub_id, clock


async def test_a_posting_is_counted_once_per_identifier_and_read_back_per_period(
    billing: Billing, harness: BillingHarness
) -> None:
    sub_id, _ = await _metered(billing, harness)
    first = UsagePosting(sub_id, "api_calls", Decimal("120.5"), T0 + timedelta(days=2), "agg-1:v1")
    (receipt,) = await billing.post_usage([first], idempotency_key="evt-2:post")
    assert (receipt.quantity, receipt.duplicate, receipt.identifier) == (
        Decimal("120.5"),
        False,
        "agg-1:v1",
    )
    assert receipt.customer == harness.subscription(sub_id).customer
    (again,) = await billing.post_usage([first], idempotency_key="evt-3:post")
    assert again.duplicate is True
    delta = UsagePosting(sub_id, "api_calls", Decimal("9.5"), T0 + timedelta(days=3), "agg-1:v2")
    next_period = UsagePosting(sub_id, "api_calls", Decimal("7"), FEB, "agg-2:v1")
    receipts = await billing.post_usage([delta, next_period], idempotency_key="evt-4:post")
    assert [r.identifier for r in receipts] == ["agg-1:v2", "agg-2:v1"]
    assert await billing.usage_counted(sub_id, "api_calls", T0, FEB) == Decimal(130)
    assert await billing.usage_counted(sub_id, "api_calls", FEB, FEB + timedelta(days=28)) == 7


async def test_a_meter_not_on_the_subscription_is_a_data_error_naming_both(
    billing: Billing, harness: BillingHarness
) -> None:
    sub_id, _ = await _metered(billing, harness)
    harness.metered_price("storage_gb", "1")
    posting = UsagePosting(sub_id, "storage_gb", Decimal(1), T0, "agg-9:v1")
    with pytest.raises(DataError) as raised:
        await billing.post_usage([posting], idempotency_key="evt-2:post")
    assert sub_id in str(raised.value) and "storage_gb" in str(raised.value)


async def test_usage_lines_bill_the_period_in_arrears_at_the_unit_price_to_the_cent(
    billing: Billing, harness: BillingHarness
) -> None:
    sub_id, clock = await _metered(billing, harness, unit_minor="0.37")
    postings = [
        UsagePosting(sub_id, "api_calls", Decimal(q), T0 + timedelta(days=d), f"agg-{d}:v1")
        for d, q in ((1, "1001"), (5, "2.5"), (20, "333"))
    ]
    await billing.post_usage(postings, idempotency_key="evt-2:post")
    assert await billing.usage_lines(subscription=sub_id) == []
    harness.advance_clock(clock, FEB + timedelta(hours=2))
    (line,) = await billing.usage_lines(subscription=sub_id)
    assert (line.subscription, line.meter) == (sub_id, "api_calls")
    assert (line.period_start, line.period_end) == (T0, FEB)
    assert line.quantity == Decimal("1336.5")
    assert line.unit_amount == Decimal("0.0037")
    assert line.amount == Money("4.95", "EUR")  # 1336.5 x 0.0037 = 4.94505
    assert line.invoice_id in harness.invoices_of(sub_id)
    assert await billing.usage_lines(invoice=line.invoice_id) == [line]


async def test_rate_limits_and_server_errors_reach_the_engine_and_usage_is_counted_once(
    billing: Billing, harness: BillingHarness
) -> None:
    sub_id, _ = await _metered(billing, harness)
    postings = [
        UsagePosting(sub_id, "api_calls", Decimal(n), T0 + timedelta(days=n), f"agg-{n}:v1")
        for n in (1, 2, 3)
    ]
    await billing.post_usage(postings[:1], idempotency_key="evt-2:post")
    harness.rate_limit_next(2)
    engine = EngineLayer()
    receipts = await engine.run(lambda: billing.post_usage(postings, idempotency_key="evt-2:post"))
    assert len(engine.failures) == 2 and harness.pending_faults() == 0
    assert [r.identifier for r in receipts] == ["agg-1:v1", "agg-2:v1", "agg-3:v1"]
    harness.fail_next_server_errors(1)
    with pytest.raises(TransientError):
        await billing.post_usage(postings[:1], idempotency_key="evt-3:post")
    assert await billing.usage_counted(sub_id, "api_calls", T0, FEB) == Decimal(6)


async def test_usage_is_read_back_over_a_period_that_starts_mid_minute(
    billing: Billing, harness: BillingHarness
) -> None:
    price = harness.metered_price("api_calls", "1")
    start = T0 + timedelta(seconds=37)
    customer = harness.customer_with_card(clock=harness.start_clock(start))
    created = await billing.create_subscription(
        subscription_for(customer, [(price, None)], start=start), idempotency_key="evt-1:sub"
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    end = created.current_period_end
    assert created.current_period_start == start
    posting = UsagePosting(sub_id, "api_calls", Decimal(8), start + timedelta(minutes=1), "a:v1")
    await billing.post_usage([posting], idempotency_key="evt-2:post")
    assert await billing.usage_counted(sub_id, "api_calls", start, end) == Decimal(8)
