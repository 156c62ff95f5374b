"""Payments as billing holds them: the invoice a payment paid, and refunds, cumulative."""

from __future__ import annotations

import pytest

from quote2cash.canonical import Money, PaymentStatus
from quote2cash.connectors.roles import Billing
from quote2cash.engine.errors import PermanentError

from .harness import BillingHarness, subscription_for


async def _paid_invoice(billing: Billing, harness: BillingHarness) -> tuple[str, str]:
    """A subscription whose first invoice (3 x 33.33 EUR) is paid: (invoice id, payment id)."""
    customer = harness.customer_with_card(clock=harness.start_clock())
    created = await billing.create_subscription(
        subscription_for(customer, [(harness.seat_price("33.33"), 3)]),
        idempotency_key="evt-refund:subscribe",
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    (invoice,) = harness.invoices_of(sub_id)
    return invoice, harness.payment_of(invoice)


async def test_a_payment_names_the_invoice_it_paid(
    billing: Billing, harness: BillingHarness
) -> None:
    invoice_id, paid_by = await _paid_invoice(billing, harness)
    payment = await billing.get_payment(paid_by)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.amount == Money("99.99", "EUR")
    assert payment.amount_refunded is None
    assert payment.invoice is not None and payment.invoice.id_in("billing") == invoice_id
    assert payment.id_in("billing") == paid_by


async def test_refunds_add_up_in_amount_refunded(billing: Billing, harness: BillingHarness) -> None:
    invoice_id, paid_by = await _paid_invoice(billing, harness)
    harness.refund(paid_by, Money("30.00", "EUR"))
    first = await billing.get_payment(paid_by)
    assert first.status is PaymentStatus.REFUNDED
    assert first.amount_refunded == Money("30.00", "EUR")
    harness.refund(paid_by)
    full = await billing.get_payment(paid_by)
    assert full.amount_refunded == full.amount == Money("99.99", "EUR")
    assert full.invoice is not None and full.invoice.id_in("billing") == invoice_id


async def test_an_unknown_payment_is_a_permanent_error(billing: Billing) -> None:
    with pytest.raises(PermanentError, match="ch_nope"):
        await billing.get_payment("ch_nope")
