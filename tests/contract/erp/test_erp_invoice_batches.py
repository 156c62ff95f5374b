"""ERP contract: ``post_invoices`` posts a batch per item (one failure fails only itself), once
per reference, with the same receipts ``post_invoice`` gives one at a time."""

from __future__ import annotations

import asyncio

import pytest

from contract.erp import builders
from contract.erp.harness import ErpWorld
from quote2cash.canonical import InvoiceStatus
from quote2cash.connectors.batching import BatchingErp
from quote2cash.connectors.roles import Erp, InvoicePosting, PostedInvoice
from quote2cash.engine.errors import DataError, MappingError, TransientError

ENTITIES = ["US", "DE"]


async def _customer(erp: Erp, unique: str, entity: str) -> str:
    customer = builders.customer(unique, entity)
    return await erp.upsert_customer(customer, legal_entity=entity, idempotency_key=f"c-{unique}")


@pytest.mark.parametrize("entity", ENTITIES)
async def test_a_batch_posts_each_invoice_once_and_a_bad_one_fails_alone(
    erp: Erp, erp_world: ErpWorld, unique: str, entity: str
) -> None:
    currency = erp_world.currencies[entity]
    rate = erp_world.sales_tax_rates[entity] or None
    customer_id = await _customer(erp, unique, entity)
    code = erp_world.item_codes[0]
    good = [
        builders.invoice(f"{unique}-{n}", customer_id, currency, code, tax_rate=rate)
        for n in range(4)
    ]
    unknown_item = builders.invoice(f"{unique}-gone", customer_id, currency, f"GONE-{unique}")
    wrong_tax = builders.invoice(
        f"{unique}-tax", customer_id, currency, code, tax_rate=rate, tax_off_by="0.01"
    )
    batch = [
        InvoicePosting(good[0], entity, f"k0-{unique}"),
        InvoicePosting(unknown_item, entity, f"kg-{unique}"),
        InvoicePosting(good[1], entity, f"k1-{unique}"),
        InvoicePosting(wrong_tax, entity, f"kt-{unique}"),
        InvoicePosting(good[2], entity, f"k2-{unique}"),
        InvoicePosting(good[0], entity, f"again-{unique}"),  # the same number twice
        InvoicePosting(good[3], entity, f"k3-{unique}"),
    ]
    results = await erp.post_invoices(batch)
    assert len(results) == len(batch)
    refused = results[1].error
    assert isinstance(refused, MappingError) and results[1].posted is None
    assert f"INV-{unique}-gone" in str(refused) and f"GONE-{unique}" in str(refused)
    if rate is not None:  # a tax off by a cent from the entity's rate is refused
        off = results[3].error
        assert isinstance(off, DataError) and f"INV-{unique}-tax" in str(off)
    posted = [results[i].posted for i in (0, 2, 4, 6)]
    for receipt, invoice in zip(posted, good, strict=True):
        assert receipt is not None
        assert receipt.total == invoice.total and receipt.status is InvoiceStatus.OPEN
        assert receipt.number
    assert results[5] == results[0]
    assert len({receipt.erp_id for receipt in posted if receipt}) == 4
    # again as a batch, and one at a time: the same documents, nothing posted twice
    again = await erp.post_invoices(batch)
    assert [r.posted for r in again] == [r.posted for r in results]
    alone = await erp.post_invoice(good[2], legal_entity=entity, idempotency_key="other")
    assert alone == posted[2]
    for receipt, invoice in zip(posted, good, strict=True):
        assert receipt is not None
        status = await erp.invoice_status(receipt.erp_id)
        assert (status.total, status.amount_due) == (invoice.total, invoice.total)


async def test_a_batch_resumes_an_invoice_posted_alone_and_spans_legal_entities(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    invoices = {}
    for entity in ENTITIES:
        customer_id = await _customer(erp, f"{unique}{entity}", entity)
        invoices[entity] = builders.invoice(
            f"{unique}-{entity}", customer_id, erp_world.currencies[entity], erp_world.item_codes[0]
        )
    first = await erp.post_invoice(invoices["US"], legal_entity="US", idempotency_key=unique)
    results = await erp.post_invoices(
        [InvoicePosting(invoices[e], e, f"b-{unique}-{e}") for e in ENTITIES]
    )
    assert results[0].posted == first
    de = results[1].posted
    assert de is not None and de.total == invoices["DE"].total
    assert de.total.currency == erp_world.currencies["DE"]


async def test_an_empty_batch_is_no_call(erp: Erp) -> None:
    assert await erp.post_invoices([]) == []


async def test_postings_made_at_once_go_as_few_batches_each_caller_its_own_answer(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    currency = erp_world.currencies["US"]
    customer_id = await _customer(erp, unique, "US")
    code = erp_world.item_codes[0]
    batched = BatchingErp(erp, max_batch=4, window=0.2)
    invoices = [builders.invoice(f"{unique}-{n}", customer_id, currency, code) for n in range(5)]
    invoices.insert(2, builders.invoice(f"{unique}-gone", customer_id, currency, f"GONE-{unique}"))
    answers = await asyncio.gather(
        *(
            batched.post_invoice(inv, legal_entity="US", idempotency_key=f"s-{unique}-{n}")
            for n, inv in enumerate(invoices)
        ),
        return_exceptions=True,
    )
    assert batched.batches_sent == 2  # four at once, then the other two after the window
    refused = answers[2]
    assert isinstance(refused, MappingError) and f"GONE-{unique}" in str(refused)
    receipts = [a for n, a in enumerate(answers) if n != 2]
    assert all(isinstance(r, PostedInvoice) for r in receipts)
    assert len({r.erp_id for r in receipts if isinstance(r, PostedInvoice)}) == 5
    alone = await erp.post_invoice(invoices[5], legal_entity="US", idempotency_key="x")
    assert alone == answers[5]
    # what the batcher does not batch passes through to the connector
    assert (await batched.invoice_status(alone.erp_id)).total == invoices[5].total


async def test_an_unreachable_erp_is_each_items_transient_error(
    erp_world: ErpWorld, unique: str
) -> None:
    currency = erp_world.currencies["US"]
    invoices = [
        builders.invoice(f"{unique}-{n}", "1", currency, erp_world.item_codes[0]) for n in range(2)
    ]
    async with erp_world.connect_unreachable() as down:
        results = await down.post_invoices(
            [InvoicePosting(inv, "US", f"d-{unique}-{n}") for n, inv in enumerate(invoices)]
        )
    assert [r.posted for r in results] == [None, None]
    for result in results:
        assert isinstance(result.error, TransientError)
        assert all(secret not in str(result.error) for secret in erp_world.secrets)
