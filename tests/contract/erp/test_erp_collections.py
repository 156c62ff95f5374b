"""ERP contract: payments (partial, idempotent, conflicts) and credit notes against an invoice."""

from __future__ import annotations

import pytest

from contract.erp import builders
from contract.erp.harness import ErpWorld
from quote2cash.canonical import InvoiceStatus, Money, PaymentStatus
from quote2cash.connectors.roles import Erp, PostedInvoice
from quote2cash.engine.errors import Category, ConflictError, DataError, PermanentError


async def _posted(erp: Erp, erp_world: ErpWorld, unique: str, entity: str) -> PostedInvoice:
    """A customer and an open invoice of 87.65 for them in ``entity``."""
    customer = builders.customer(unique, entity)
    customer_id = await erp.upsert_customer(customer, legal_entity=entity, idempotency_key=unique)
    currency = erp_world.currencies[entity]
    invoice = builders.invoice(unique, customer_id, currency, erp_world.item_codes[0])
    return await erp.post_invoice(invoice, legal_entity=entity, idempotency_key=unique)


@pytest.mark.parametrize("entity", ["US", "DE"])
async def test_partial_payments_then_paid_each_applied_once(
    erp: Erp, erp_world: ErpWorld, unique: str, entity: str
) -> None:
    posted = await _posted(erp, erp_world, unique, entity)
    currency = posted.total.currency
    first = builders.payment(Money("40.00", currency))
    applied = await erp.apply_payment(
        first, erp_invoice_id=posted.erp_id, idempotency_key="p1" + unique
    )
    again = await erp.apply_payment(
        first, erp_invoice_id=posted.erp_id, idempotency_key="p1" + unique
    )
    assert again == applied
    status = await erp.invoice_status(posted.erp_id)
    assert status.status is InvoiceStatus.OPEN
    assert status.amount_paid == Money("40.00", currency)
    assert status.amount_due == posted.total - Money("40.00", currency)

    rest = builders.payment(status.amount_due)
    second = await erp.apply_payment(
        rest, erp_invoice_id=posted.erp_id, idempotency_key="p2" + unique
    )
    assert second != applied
    paid = await erp.invoice_status(posted.erp_id)
    assert paid.status is InvoiceStatus.PAID
    assert (paid.amount_paid, paid.amount_due) == (posted.total, Money.zero(currency))
    replay = await erp.apply_payment(
        rest, erp_invoice_id=posted.erp_id, idempotency_key="p2" + unique
    )
    assert replay == second

    with pytest.raises(ConflictError) as conflict:
        await erp.apply_payment(rest, erp_invoice_id=posted.erp_id, idempotency_key="p3" + unique)
    assert "paid" in str(conflict.value)


async def test_paying_more_than_is_owed_is_refused(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "US")
    too_much = builders.payment(posted.total + Money("0.01", posted.total.currency))
    with pytest.raises(PermanentError) as refused:
        await erp.apply_payment(too_much, erp_invoice_id=posted.erp_id, idempotency_key=unique)
    assert refused.value.category in (Category.DATA, Category.CONFLICT)
    assert str(too_much.amount.amount) in str(refused.value)
    assert (await erp.invoice_status(posted.erp_id)).amount_due == posted.total


async def test_a_payment_in_another_currency_is_a_data_error(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "DE")
    other = "USD" if posted.total.currency != "USD" else "EUR"
    with pytest.raises(DataError, match=other):
        await erp.apply_payment(
            builders.payment(Money("1.00", other)),
            erp_invoice_id=posted.erp_id,
            idempotency_key=unique,
        )


async def test_a_refund_is_applied_or_refused_clearly_never_crashes(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "US")
    refunded = builders.payment(
        posted.total,
        global_id=f"pay-{unique}",
        status=PaymentStatus.REFUNDED,
        amount_refunded=posted.total,
    )
    try:
        result = await erp.apply_payment(
            refunded, erp_invoice_id=posted.erp_id, idempotency_key=unique
        )
    except PermanentError as refused:
        assert f"pay-{unique}" in str(refused) and "refund" in str(refused)
    else:
        assert result


async def test_paying_a_missing_invoice_is_a_data_error(erp: Erp, unique: str) -> None:
    with pytest.raises(PermanentError) as refused:
        await erp.apply_payment(
            builders.payment(Money("1.00", "USD")),
            erp_invoice_id="987654321",
            idempotency_key=unique,
        )
    assert refused.value.category is Category.DATA
    assert "987654321" in str(refused.value)


async def test_credit_note_is_issued_once_and_lowers_what_is_owed(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "DE")
    currency = posted.total.currency
    before = await erp.invoice_status(posted.erp_id)
    assert before.amount_due == posted.total
    memo = builders.credit_memo(unique, posted.erp_id, Money("10.01", currency))
    credit = await erp.issue_credit_note(memo, erp_invoice_id=posted.erp_id, idempotency_key=unique)
    again = await erp.issue_credit_note(memo, erp_invoice_id=posted.erp_id, idempotency_key=unique)
    assert again == credit
    assert credit != posted.erp_id
    status = await erp.invoice_status(posted.erp_id)
    assert status.amount_due == posted.total - Money("10.01", currency)
    rest = builders.payment(status.amount_due)
    await erp.apply_payment(rest, erp_invoice_id=posted.erp_id, idempotency_key="p" + unique)
    assert (await erp.invoice_status(posted.erp_id)).status is InvoiceStatus.PAID


async def test_a_credit_note_in_another_currency_is_a_data_error(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    posted = await _posted(erp, erp_world, unique, "US")
    memo = builders.credit_memo(unique, posted.erp_id, Money("1.00", "EUR"))
    with pytest.raises(DataError, match="EUR"):
        await erp.issue_credit_note(memo, erp_invoice_id=posted.erp_id, idempotency_key=unique)
