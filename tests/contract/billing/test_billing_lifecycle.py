"""Renewal and cancellation semantics, each safe to run again."""

from __future__ import annotations

import pytest

from quote2cash.connectors.roles import Billing
from quote2cash.engine.errors import ConflictError

from .harness import BillingHarness, subscription_for


async def _subscribed(billing: Billing, harness: BillingHarness) -> str:
    price = harness.seat_price("30.00")
    customer = harness.customer_with_card(clock=harness.start_clock())
    created = await billing.create_subscription(
        subscription_for(customer, [(price, 2)]), idempotency_key="evt-1:subscribe"
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    return sub_id


async def test_cancel_at_period_end_then_renew_withdraws_it(
    billing: Billing, harness: BillingHarness
) -> None:
    sub_id = await _subscribed(billing, harness)
    ending = await billing.cancel(sub_id, at_period_end=True, idempotency_key="evt-2:cancel")
    assert ending.status == "active" and ending.cancel_at == ending.current_period_end
    assert harness.subscription(sub_id).ends_at_period_end is True
    again = await billing.cancel(sub_id, at_period_end=True, idempotency_key="evt-2:cancel")
    assert again.cancel_at == ending.cancel_at
    renewed = await billing.renew(sub_id, idempotency_key="evt-3:renew")
    assert renewed.status == "active" and renewed.cancel_at is None
    assert harness.subscription(sub_id).ends_at_period_end is False
    unchanged = await billing.renew(sub_id, idempotency_key="evt-4:renew")
    assert unchanged == renewed


async def test_cancel_now_credits_unused_time_and_cannot_be_renewed(
    billing: Billing, harness: BillingHarness
) -> None:
    sub_id = await _subscribed(billing, harness)
    canceled = await billing.cancel(sub_id, at_period_end=False, idempotency_key="evt-2:cancel")
    assert canceled.status == "canceled" and canceled.canceled_at is not None
    again = await billing.cancel(sub_id, at_period_end=False, idempotency_key="evt-3:cancel")
    assert again.status == "canceled"
    final = harness.invoices_of(sub_id)[0]
    invoice = await billing.get_invoice(final)
    assert any(line.proration and line.amount.is_negative() for line in invoice.lines)
    assert invoice.total == harness.invoice_total(final)
    with pytest.raises(ConflictError) as info:
        await billing.renew(sub_id, idempotency_key="evt-4:renew")
    assert sub_id in str(info.value)


async def test_get_subscription_reads_what_billing_holds(
    billing: Billing, harness: BillingHarness
) -> None:
    sub_id = await _subscribed(billing, harness)
    fetched = await billing.get_subscription(sub_id)
    assert fetched.id_in("billing") == sub_id
    assert fetched.contract_number == "C-0001"
    assert fetched.currency == "EUR" and fetched.items[0].quantity == 2
