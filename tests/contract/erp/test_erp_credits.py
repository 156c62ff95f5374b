"""ERP contract: the customer's credit (a credit note paying no invoice) and its use on later
invoices exactly as billing applied the balance, with no cash; a payment then fits."""

from __future__ import annotations

import datetime as dt

import pytest

from contract.erp import builders
from contract.erp.harness import ErpWorld
from quote2cash.canonical import CreditMemo, CreditMemoLine, InvoiceStatus, Money, Ref
from quote2cash.connectors.roles import Erp
from quote2cash.engine.errors import ConflictError, TransientError


def customer_credit(unique: str, customer_id: str, amount: Money, number: str) -> CreditMemo:
    """A billing credit invoice (downgrade proration) as the customer's credit."""
    return CreditMemo(
        number=number,
        customer=Ref(global_id=f"cus-{unique}", external_ids={"erp": customer_id}),
        currency=amount.currency,
        issued_at=dt.datetime.now(dt.UTC),
        lines=(CreditMemoLine(description="Unused time on 2 seats", amount=amount),),
        tax=Money.zero(amount.currency),
        total=amount,
    )


async def _customer(erp: Erp, unique: str, entity: str) -> str:
    customer = builders.customer(unique, entity)
    return await erp.upsert_customer(customer, legal_entity=entity, idempotency_key=unique)


async def _invoice(
    erp: Erp, erp_world: ErpWorld, unique: str, customer_id: str, entity: str, number: str
) -> str:
    invoice = builders.invoice(
        unique, customer_id, erp_world.currencies[entity], erp_world.item_codes[0], number=number
    )
    posted = await erp.post_invoice(invoice, legal_entity=entity, idempotency_key=number)
    assert posted.total == Money("87.65", posted.total.currency)
    return posted.erp_id


async def test_credit_stays_the_customers_until_billing_applies_it(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    entity = "US"
    currency = erp_world.currencies[entity]
    customer_id = await _customer(erp, unique, entity)
    first = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-A-{unique}")
    memo = customer_credit(unique, customer_id, Money("50.00", currency), f"CR-{unique}")
    credit = await erp.post_customer_credit(memo, legal_entity=entity, idempotency_key=unique)
    again = await erp.post_customer_credit(memo, legal_entity=entity, idempotency_key=unique)
    assert again.erp_id == credit.erp_id and credit.total == Money("-50.00", currency)
    # Billing keeps the credit in the balance: the open invoice still owes all of it, and the
    # customer pays it in full; the ERP takes the payment.
    assert (await erp.invoice_status(first)).amount_due == Money("87.65", currency)
    await erp.apply_payment(
        builders.payment(Money("87.65", currency)),
        erp_invoice_id=first,
        idempotency_key="p" + unique,
    )
    assert (await erp.invoice_status(first)).status is InvoiceStatus.PAID

    # The next invoice takes 30.00 of the credit, the one after the remaining 20.00.
    second = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-B-{unique}")
    applied = await erp.apply_customer_credit(
        second, Money("30.00", currency), idempotency_key="c2" + unique
    )
    replay = await erp.apply_customer_credit(
        second, Money("30.00", currency), idempotency_key="c2" + unique
    )
    assert replay == applied
    assert (await erp.invoice_status(second)).amount_due == Money("57.65", currency)
    third = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-C-{unique}")
    await erp.apply_customer_credit(third, Money("20.00", currency), idempotency_key="c3" + unique)
    assert (await erp.invoice_status(third)).amount_due == Money("67.65", currency)
    assert (await erp.invoice_status(credit.erp_id)).amount_due.is_zero()
    # No credit is left: applying more waits for a credit to be posted, and changes nothing.
    with pytest.raises(TransientError, match="open credit"):
        await erp.apply_customer_credit(
            third, Money("0.01", currency), idempotency_key="c4" + unique
        )
    assert (await erp.invoice_status(third)).amount_due == Money("67.65", currency)
    # Cash pays exactly what is left.
    await erp.apply_payment(
        builders.payment(Money("57.65", currency)),
        erp_invoice_id=second,
        idempotency_key="p2" + unique,
    )
    assert (await erp.invoice_status(second)).status is InvoiceStatus.PAID


async def test_an_invoice_settled_wholly_from_credit_is_paid_with_no_cash(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    entity = "DE"
    currency = erp_world.currencies[entity]
    customer_id = await _customer(erp, unique, entity)
    memo = customer_credit(unique, customer_id, Money("100.00", currency), f"CR-{unique}")
    credit = await erp.post_customer_credit(memo, legal_entity=entity, idempotency_key=unique)
    invoice = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-{unique}")
    await erp.apply_customer_credit(invoice, Money("87.65", currency), idempotency_key=unique)
    settled = await erp.invoice_status(invoice)
    assert settled.status is InvoiceStatus.PAID
    assert (settled.amount_paid, settled.amount_due) == (
        Money("87.65", currency),
        Money.zero(currency),
    )
    left = await erp.invoice_status(credit.erp_id)
    assert left.status is InvoiceStatus.OPEN and left.amount_due == Money("-12.35", currency)
    # More than the invoice owes is refused, naming it.
    other = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-2-{unique}")
    with pytest.raises(ConflictError, match=r"owes 87\.65"):
        await erp.apply_customer_credit(
            other, Money("87.66", currency), idempotency_key="x" + unique
        )


async def test_a_payment_is_never_refused_for_credit_the_erp_applied(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    """Billing collected the whole invoice in cash, so the credit the ERP took off it is the
    customer's again; the payment is applied, not refused as an overpayment."""
    entity = "US"
    currency = erp_world.currencies[entity]
    customer_id = await _customer(erp, unique, entity)
    first = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-A-{unique}")
    memo = builders.credit_memo(unique, first, Money("10.01", currency))
    note = await erp.issue_credit_note(memo, erp_invoice_id=first, idempotency_key=unique)
    assert (await erp.invoice_status(first)).amount_due == Money("77.64", currency)
    await erp.apply_payment(
        builders.payment(Money("87.65", currency)),
        erp_invoice_id=first,
        idempotency_key="p" + unique,
    )
    assert (await erp.invoice_status(first)).status is InvoiceStatus.PAID
    assert (await erp.invoice_status(note)).amount_due == Money("-10.01", currency)

    second = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-B-{unique}")
    await erp.apply_customer_credit(second, Money("10.01", currency), idempotency_key="c" + unique)
    assert (await erp.invoice_status(note)).amount_due.is_zero()
    await erp.apply_payment(
        builders.payment(Money("87.65", currency)),
        erp_invoice_id=second,
        idempotency_key="p2" + unique,
    )
    assert (await erp.invoice_status(second)).status is InvoiceStatus.PAID
    assert (await erp.invoice_status(note)).amount_due == Money("-10.01", currency)
    # A redelivered application of that credit does not put it back on the paid invoice.
    await erp.apply_customer_credit(second, Money("10.01", currency), idempotency_key="c" + unique)
    assert (await erp.invoice_status(note)).amount_due == Money("-10.01", currency)
    third = await _invoice(erp, erp_world, unique, customer_id, entity, f"INV-C-{unique}")
    await erp.apply_customer_credit(third, Money("10.01", currency), idempotency_key="c3" + unique)
    assert (await erp.invoice_status(third)).amount_due == Money("77.64", currency)
