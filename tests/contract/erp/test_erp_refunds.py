"""ERP contract: reversing what billing refunded of a payment (``reverse_payment``).

Billing reports a refund as the payment's cumulative ``amount_refunded``; the ERP's reversals of
that billing payment converge on it: partial refunds add up, redeliveries and stale (smaller)
amounts change nothing, a refund the ERP has no payment for yet is worth a retry.
"""

from __future__ import annotations

import pytest

from contract.erp import builders
from contract.erp.harness import ErpWorld
from quote2cash.canonical import InvoiceStatus, Money, Payment, PaymentStatus
from quote2cash.connectors.roles import Erp, PostedInvoice
from quote2cash.engine.errors import DataError, TransientError


async def _posted(erp: Erp, erp_world: ErpWorld, unique: str, entity: str) -> PostedInvoice:
    """A customer and an open invoice of 87.65 for them in ``entity``."""
    customer = builders.customer(unique, entity)
    customer_id = await erp.upsert_customer(customer, legal_entity=entity, idempotency_key=unique)
    currency = erp_world.currencies[entity]
    invoice = builders.invoice(unique, customer_id, currency, erp_world.item_codes[0])
    return await erp.post_invoice(invoice, legal_entity=entity, idempotency_key=unique)


async def _reverse(erp: Erp, posted: PostedInvoice, refund: Payment, key: str) -> str:
    """Book a billing refund of ``posted``'s payment in the ERP."""
    return await erp.reverse_payment(refund, erp_invoice_id=posted.erp_id, idempotency_key=key)


async def _paid(erp: Erp, erp_world: ErpWorld, unique: str, entity: str) -> PostedInvoice:
    """An invoice of 87.65 paid in full by one payment (billing's ``ch_<unique>``)."""
    posted = await _posted(erp, erp_world, unique, entity)
    await erp.apply_payment(
        builders.payment(posted.total), erp_invoice_id=posted.erp_id, idempotency_key="p" + unique
    )
    assert (await erp.invoice_status(posted.erp_id)).status is InvoiceStatus.PAID
    return posted


@pytest.mark.parametrize("entity", ["US", "DE"])
async def test_a_full_refund_reopens_the_paid_invoice(
    erp: Erp, erp_world: ErpWorld, unique: str, entity: str
) -> None:
    posted = await _paid(erp, erp_world, unique, entity)
    currency = posted.total.currency
    refund = builders.refund(posted.total, posted.total, f"ch_{unique}")
    reversal = await _reverse(erp, posted, refund, "r" + unique)
    assert reversal
    status = await erp.invoice_status(posted.erp_id)
    assert status.status is InvoiceStatus.OPEN
    assert (status.amount_due, status.amount_paid) == (posted.total, Money.zero(currency))


async def test_partial_refunds_add_up_and_a_redelivery_changes_nothing(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _paid(erp, erp_world, unique, "US")
    currency = posted.total.currency
    charge = f"ch_{unique}"
    first = await _reverse(
        erp, posted, builders.refund(posted.total, Money("30.00", currency), charge), "r1" + unique
    )
    after_first = await erp.invoice_status(posted.erp_id)
    assert after_first.status is InvoiceStatus.OPEN
    assert after_first.amount_due == Money("30.00", currency)

    cumulative = builders.refund(posted.total, Money("50.00", currency), charge)
    second = await _reverse(erp, posted, cumulative, "r2" + unique)
    assert second != first
    status = await erp.invoice_status(posted.erp_id)
    assert status.status is InvoiceStatus.OPEN
    assert status.amount_due == Money("50.00", currency)
    assert status.amount_paid == posted.total - Money("50.00", currency)

    # the same event again, under another key: nothing more is reversed
    redelivered = await _reverse(erp, posted, cumulative, "r3" + unique)
    assert redelivered == second
    assert await erp.invoice_status(posted.erp_id) == status


async def test_a_smaller_cumulative_refund_after_a_bigger_one_changes_nothing(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _paid(erp, erp_world, unique, "DE")
    currency = posted.total.currency
    charge = f"ch_{unique}"
    newest = await _reverse(
        erp, posted, builders.refund(posted.total, Money("50.00", currency), charge), "r2" + unique
    )
    status = await erp.invoice_status(posted.erp_id)
    assert status.amount_due == Money("50.00", currency)
    stale = await _reverse(
        erp, posted, builders.refund(posted.total, Money("30.00", currency), charge), "r1" + unique
    )
    assert stale == newest
    assert await erp.invoice_status(posted.erp_id) == status


async def test_refunds_of_two_payments_are_counted_apart(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "US")
    currency = posted.total.currency
    first, second = Money("40.00", currency), posted.total - Money("40.00", currency)
    for key, amount in (("p1", first), ("p2", second)):
        await erp.apply_payment(
            builders.payment(amount), erp_invoice_id=posted.erp_id, idempotency_key=key + unique
        )
    await _reverse(
        erp,
        posted,
        builders.refund(first, Money("10.00", currency), f"ch_1{unique}"),
        "r1" + unique,
    )
    await _reverse(
        erp,
        posted,
        builders.refund(second, Money("10.00", currency), f"ch_2{unique}"),
        "r2" + unique,
    )
    status = await erp.invoice_status(posted.erp_id)
    assert status.status is InvoiceStatus.OPEN
    assert status.amount_due == Money("20.00", currency)


async def test_a_refund_before_its_payment_is_applied_is_transient_and_books_nothing(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "US")
    currency = posted.total.currency
    refund = builders.refund(Money("50.00", currency), Money("50.00", currency), f"ch_{unique}")
    with pytest.raises(TransientError) as early:
        await _reverse(erp, posted, refund, unique)
    assert posted.number in str(early.value) and "50.00" in str(early.value)
    assert (await erp.invoice_status(posted.erp_id)).amount_due == posted.total

    # a payment smaller than what would be reversed is not enough either
    await erp.apply_payment(
        builders.payment(Money("40.00", currency)),
        erp_invoice_id=posted.erp_id,
        idempotency_key="p" + unique,
    )
    with pytest.raises(TransientError) as short:
        await _reverse(erp, posted, refund, unique)
    assert "40.00" in str(short.value) and "50.00" in str(short.value)
    status = await erp.invoice_status(posted.erp_id)
    assert status.amount_due == posted.total - Money("40.00", currency)

    # once the payment is there, the same refund goes through
    await erp.apply_payment(
        builders.payment(Money("10.00", currency)),
        erp_invoice_id=posted.erp_id,
        idempotency_key="p2" + unique,
    )
    await _reverse(erp, posted, refund, unique)
    assert (await erp.invoice_status(posted.erp_id)).amount_due == posted.total


async def test_a_refund_in_another_currency_is_a_data_error(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _paid(erp, erp_world, unique, "DE")
    other = "USD" if posted.total.currency != "USD" else "EUR"
    refund = builders.refund(Money("10.00", other), Money("10.00", other), f"ch_{unique}")
    with pytest.raises(DataError, match=other):
        await _reverse(erp, posted, refund, unique)
    assert (await erp.invoice_status(posted.erp_id)).status is InvoiceStatus.PAID


async def test_a_refund_without_its_billing_payment_id_is_a_data_error(
    erp: Erp, unique: str
) -> None:
    refund = builders.payment(
        Money("10.00", "USD"),
        global_id=f"pay-{unique}",
        status=PaymentStatus.REFUNDED,
        amount_refunded=Money("10.00", "USD"),
    )
    with pytest.raises(DataError, match=r"external_ids\['billing'\]"):
        await erp.reverse_payment(refund, erp_invoice_id="1", idempotency_key=unique)


async def test_a_new_payment_after_a_refund_pays_the_invoice_again(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _paid(erp, erp_world, unique, "US")
    currency = posted.total.currency
    await _reverse(
        erp, posted, builders.refund(posted.total, posted.total, f"ch_{unique}"), "r" + unique
    )
    reopened = await erp.invoice_status(posted.erp_id)
    assert reopened.amount_due == posted.total
    await erp.apply_payment(
        builders.payment(reopened.amount_due),
        erp_invoice_id=posted.erp_id,
        idempotency_key="p2" + unique,
    )
    paid = await erp.invoice_status(posted.erp_id)
    assert paid.status is InvoiceStatus.PAID
    assert (paid.amount_paid, paid.amount_due) == (posted.total, Money.zero(currency))


async def test_a_refund_leaves_a_credit_note_applied(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "DE")
    currency = posted.total.currency
    memo = builders.credit_memo(unique, posted.erp_id, Money("10.01", currency))
    await erp.issue_credit_note(memo, erp_invoice_id=posted.erp_id, idempotency_key=unique)
    rest = (await erp.invoice_status(posted.erp_id)).amount_due
    await erp.apply_payment(
        builders.payment(rest), erp_invoice_id=posted.erp_id, idempotency_key="p" + unique
    )
    assert (await erp.invoice_status(posted.erp_id)).status is InvoiceStatus.PAID

    # only the payment came in as money: refunding more than it is transient, all of it is fine
    with pytest.raises(TransientError):
        await _reverse(
            erp, posted, builders.refund(posted.total, posted.total, f"ch_{unique}"), "r0" + unique
        )
    assert (await erp.invoice_status(posted.erp_id)).status is InvoiceStatus.PAID
    await _reverse(erp, posted, builders.refund(rest, rest, f"ch_{unique}"), "r" + unique)
    status = await erp.invoice_status(posted.erp_id)
    assert status.status is InvoiceStatus.OPEN
    assert status.amount_due == rest == posted.total - Money("10.01", currency)
