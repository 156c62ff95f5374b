"""ERP contract: bookings and posted invoices (idempotent, to the cent, mapping errors)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contract.erp import builders
from contract.erp.harness import ErpWorld
from quote2cash.canonical import InvoiceStatus, Money, Ref
from quote2cash.connectors.roles import Erp
from quote2cash.engine.errors import Category, DataError, MappingError, PermanentError

ENTITIES = ["US", "DE"]


async def _customer(erp: Erp, unique: str, entity: str) -> str:
    customer = builders.customer(unique, entity)
    return await erp.upsert_customer(customer, legal_entity=entity, idempotency_key=f"c-{unique}")


@pytest.mark.parametrize("entity", ENTITIES)
async def test_booking_twice_with_the_same_key_is_one_order(
    erp: Erp, erp_world: ErpWorld, unique: str, entity: str
) -> None:
    customer_id = await _customer(erp, unique, entity)
    order = builders.order(
        unique, customer_id, erp_world.currencies[entity], erp_world.item_codes[0]
    )
    first = await erp.book_order(order, legal_entity=entity, idempotency_key=f"o-{unique}")
    again = await erp.book_order(order, legal_entity=entity, idempotency_key=f"o-{unique}")
    assert first and again == first


async def test_booking_an_unknown_item_is_a_mapping_error_naming_order_and_code(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    customer_id = await _customer(erp, unique, "US")
    order = builders.order(unique, customer_id, erp_world.currencies["US"], f"NO-SUCH-{unique}")
    with pytest.raises(MappingError) as refused:
        await erp.book_order(order, legal_entity="US", idempotency_key=unique)
    assert f"SO-{unique}" in str(refused.value)
    assert f"NO-SUCH-{unique}" in str(refused.value)


async def test_booking_for_a_customer_unknown_to_the_erp_is_a_mapping_error(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    order = builders.order(unique, "1", erp_world.currencies["US"], erp_world.item_codes[0])
    order = order.model_copy(update={"customer": Ref.to(f"cus-{unique}")})
    with pytest.raises(MappingError, match=f"SO-{unique}"):
        await erp.book_order(order, legal_entity="US", idempotency_key=unique)


@pytest.mark.parametrize("entity", ENTITIES)
async def test_invoice_is_posted_to_the_cent_and_only_once(
    erp: Erp, erp_world: ErpWorld, unique: str, entity: str
) -> None:
    currency = erp_world.currencies[entity]
    customer_id = await _customer(erp, unique, entity)
    invoice = builders.invoice(unique, customer_id, currency, erp_world.item_codes[0])
    assert invoice.total == Money("87.65", currency)  # 33.33 x 3 - 12.34
    posted = await erp.post_invoice(invoice, legal_entity=entity, idempotency_key=f"i-{unique}")
    assert posted.total == invoice.total
    assert posted.status is InvoiceStatus.OPEN
    assert posted.number
    again = await erp.post_invoice(invoice, legal_entity=entity, idempotency_key=f"i-{unique}")
    assert again == posted
    retried = await erp.post_invoice(invoice, legal_entity=entity, idempotency_key=f"r-{unique}")
    assert retried.erp_id == posted.erp_id  # same billing invoice number, another step key
    status = await erp.invoice_status(posted.erp_id)
    assert status.status is InvoiceStatus.OPEN
    assert (status.total, status.amount_due) == (invoice.total, invoice.total)
    assert status.amount_paid == Money.zero(currency)


async def test_a_taxed_invoice_posts_with_billings_tax_to_the_cent(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    entity = next((e for e, r in erp_world.sales_tax_rates.items() if r), None)
    if entity is None:
        pytest.skip(f"{erp_world.name} has no taxed legal entity")
    currency = erp_world.currencies[entity]
    rate = erp_world.sales_tax_rates[entity]
    customer_id = await _customer(erp, unique, entity)
    invoice = builders.invoice(
        unique, customer_id, currency, erp_world.item_codes[0], tax_rate=rate
    )
    assert invoice.tax.amount == Decimal("16.66")  # 19.00 on 99.99, -2.34 on -12.34
    posted = await erp.post_invoice(invoice, legal_entity=entity, idempotency_key=unique)
    assert posted.total == invoice.total == Money("104.31", currency)
    status = await erp.invoice_status(posted.erp_id)
    assert status.amount_due == invoice.total


async def test_a_tax_the_erp_computes_differently_is_refused_with_both_amounts(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    entity = next((e for e, r in erp_world.sales_tax_rates.items() if r), "US")
    currency = erp_world.currencies[entity]
    rate = erp_world.sales_tax_rates[entity]
    customer_id = await _customer(erp, unique, entity)
    code = erp_world.item_codes[0]
    right = builders.invoice(unique, customer_id, currency, code, tax_rate=rate)
    wrong = builders.invoice(unique, customer_id, currency, code, tax_rate=rate, tax_off_by="0.01")
    with pytest.raises(DataError) as refused:
        await erp.post_invoice(wrong, legal_entity=entity, idempotency_key=unique)
    message = str(refused.value)
    assert f"INV-{unique}" in message
    assert f"{wrong.total.amount}" in message and f"{right.total.amount}" in message
    posted = await erp.post_invoice(right, legal_entity=entity, idempotency_key=unique)
    assert posted.total == right.total


async def test_invoicing_an_unknown_item_is_a_mapping_error_naming_invoice_and_code(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    customer_id = await _customer(erp, unique, "US")
    invoice = builders.invoice(unique, customer_id, erp_world.currencies["US"], f"GONE-{unique}")
    with pytest.raises(MappingError) as refused:
        await erp.post_invoice(invoice, legal_entity="US", idempotency_key=unique)
    assert f"INV-{unique}" in str(refused.value) and f"GONE-{unique}" in str(refused.value)


@pytest.mark.parametrize("missing_id", ["987654321", "inv_not_erp"])
async def test_status_of_a_missing_invoice_is_a_data_error(erp: Erp, missing_id: str) -> None:
    with pytest.raises(PermanentError) as refused:
        await erp.invoice_status(missing_id)
    assert refused.value.category is Category.DATA
    assert missing_id in str(refused.value)


async def test_an_invoice_of_only_a_proration_credit_posts_its_negative_total(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    currency = erp_world.currencies["US"]
    customer_id = await _customer(erp, unique, "US")
    credit_line = builders.invoice_lines(currency, erp_world.item_codes[0])[1]
    invoice = builders.invoice(
        unique, customer_id, currency, erp_world.item_codes[0], lines=(credit_line,)
    )
    assert invoice.total == Money("-12.34", currency)
    posted = await erp.post_invoice(invoice, legal_entity="US", idempotency_key=unique)
    assert posted.total == invoice.total
    status = await erp.invoice_status(posted.erp_id)
    assert status.total == invoice.total
