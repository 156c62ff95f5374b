"""What TrytonErp writes into Tryton: parties, sales, deferred invoices, payments, credit notes."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from contract.erp import builders
from quote2cash.canonical import Money, Ref
from quote2cash.connectors.roles import InvoicePosting
from quote2cash.connectors.tryton import TrytonClient, TrytonErp
from quote2cash.connectors.tryton.mapping import (
    global_id_marker,
    idempotency_marker,
    payment_marker,
)
from quote2cash.engine.errors import DataError, MappingError, PermanentError
from quote2cash.sandbox.systems import tryton_config
from quote2cash.sandbox.tryton import TrytonEndpoint


def _unique() -> str:
    return uuid.uuid4().hex[:10]


async def test_a_party_carries_its_markers_once_and_its_code_is_the_erp_number(
    connector: TrytonErp, ledger: TrytonClient
) -> None:
    unique = _unique()
    customer = builders.customer(unique, tax_ids=[("eu_vat", "DE811569869")])
    party = await connector.upsert_customer(customer, legal_entity="DE", idempotency_key="k1")
    await connector.upsert_customer(customer, legal_entity="DE", idempotency_key="k2")
    await connector.upsert_customer(customer, legal_entity="DE", idempotency_key="k3")
    identifiers = await ledger.model("party.identifier").search_read(
        [("party", "=", int(party))], ["type", "code"]
    )
    pairs = sorted((r["type"] or "", r["code"]) for r in identifiers)
    assert pairs == [
        ("", global_id_marker(f"cus-{unique}")),
        ("", idempotency_marker("k1")),
        ("eu_vat", "DE811569869"),
    ]
    [row] = await ledger.model("party.party").read([int(party)], ["code", "addresses"])
    assert len(row["addresses"]) == 1
    stored = await connector.get_customer(party)
    assert stored.external_ids == {"erp": party, "erp_number": row["code"]}
    assert await ledger.model("party.party").search_count([("name", "=", customer.name)]) == 1


async def test_concurrent_upserts_of_one_new_customer_make_one_party(
    tryton_server: TrytonEndpoint, ledger: TrytonClient
) -> None:
    unique = _unique()
    customer = builders.customer(unique)
    async with TrytonErp(tryton_config(tryton_server)) as erp:
        ids = await asyncio.gather(
            *(
                erp.upsert_customer(customer, legal_entity="US", idempotency_key=f"{unique}-{i}")
                for i in range(5)
            )
        )
    assert len(set(ids)) == 1
    assert await ledger.model("party.party").search_count([("name", "=", customer.name)]) == 1


async def test_concurrent_payments_with_one_key_pay_once(
    connector: TrytonErp, ledger: TrytonClient
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
    )
    posted = await connector.post_invoice(
        builders.invoice(unique, party, "USD", "PLAT-SEAT"),
        legal_entity="US",
        idempotency_key=unique,
    )
    payment = builders.payment(Money("10.00", "USD"))
    moves = await asyncio.gather(
        *(
            connector.apply_payment(payment, erp_invoice_id=posted.erp_id, idempotency_key=unique)
            for _ in range(3)
        )
    )
    assert len(set(moves)) == 1
    status = await connector.invoice_status(posted.erp_id)
    assert status.amount_paid == Money("10.00", "USD")


async def test_a_booking_is_a_confirmed_sale_of_the_entity_invoiced_manually(
    connector: TrytonErp, ledger: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique), legal_entity="DE", idempotency_key=unique
    )
    order = builders.order(unique, party, "EUR", "SUPPORT-PREM")
    sale = await connector.book_order(order, legal_entity="DE", idempotency_key=f"o-{unique}")
    [row] = await ledger.model("sale.sale").read(
        [int(sale)],
        ["state", "invoice_method", "reference", "company", "currency.code", "total_amount"],
    )
    assert row["state"] == "processing"
    assert row["invoice_method"] == "manual"
    assert row["reference"] == f"SO-{unique}"
    assert row["company"] == tryton_server.setup.companies["gmbh"].company
    assert row["currency."]["code"] == "EUR"
    assert row["total_amount"] == Decimal("99.99")
    lines = await ledger.model("sale.line").search_read(
        [("sale", "=", int(sale))], ["product", "quantity", "unit_price"]
    )
    assert [(r["product"], r["quantity"], r["unit_price"]) for r in lines] == [
        (tryton_server.setup.products["SUPPORT-PREM"], 3.0, Decimal("33.33"))
    ]


async def test_each_invoice_line_is_deferred_over_its_service_period(
    connector: TrytonErp, ledger: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique, "US", tax_ids=[("us_ein", "04-2103594")]),
        legal_entity="US",
        idempotency_key=unique,
    )
    invoice = builders.invoice(unique, party, "USD", "PLAT-SEAT")
    posted = await connector.post_invoice(invoice, legal_entity="US", idempotency_key=unique)
    inc = tryton_server.setup.companies["inc"]
    [row] = await ledger.model("account.invoice").read(
        [int(posted.erp_id)], ["company", "reference", "state", "untaxed_amount", "tax_amount"]
    )
    assert (row["company"], row["reference"], row["state"]) == (
        inc.company,
        f"INV-{unique}",
        "posted",
    )
    assert (row["untaxed_amount"], row["tax_amount"]) == (Decimal("87.65"), Decimal("0"))
    assert posted.number.startswith("INC-INV-")
    status = await connector.invoice_status(posted.erp_id)
    assert invoice.issued_at is not None
    assert status.due_date == invoice.issued_at.date()  # no payment term: due on issue
    lines = await ledger.model("account.invoice.line").search_read(
        [("invoice", "=", int(posted.erp_id))],
        ["amount", "defer_from", "defer_to", "taxes", "account"],
        order=[("id", "ASC")],
    )
    deferrals = await ledger.model("account.invoice.deferred").search_read(
        [("invoice_line", "in", [line["id"] for line in lines])],
        ["invoice_line", "amount", "start_date", "end_date"],
    )
    by_line = {d["invoice_line"]: d for d in deferrals}
    assert len(by_line) == len(invoice.lines) == len(lines)
    for canonical, line in zip(invoice.lines, lines, strict=True):
        assert line["amount"] == canonical.amount.amount
        assert (line["defer_from"], line["defer_to"]) == (
            canonical.service_start,
            canonical.service_last_day,
        )
        assert line["taxes"] == [] and line["account"] == inc.revenue_account
        deferral = by_line[line["id"]]
        assert deferral["amount"] == canonical.amount.amount
        assert (deferral["start_date"], deferral["end_date"]) == (
            canonical.service_start,
            canonical.service_last_day,
        )


async def test_payment_move_is_marked_with_the_key_in_the_entitys_cash_journal(
    connector: TrytonErp, ledger: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique), legal_entity="DE", idempotency_key=unique
    )
    posted = await connector.post_invoice(
        builders.invoice(unique, party, "EUR", "PLAT-SEAT"),
        legal_entity="DE",
        idempotency_key=unique,
    )
    move = await connector.apply_payment(
        builders.payment(Money("20.00", "EUR")),
        erp_invoice_id=posted.erp_id,
        idempotency_key=f"pay-{unique}",
    )
    [row] = await ledger.model("account.move").read(
        [int(move)], ["description", "journal", "company", "state", "origin"]
    )
    gmbh = tryton_server.setup.companies["gmbh"]
    assert row["description"] == payment_marker(f"pay-{unique}")
    assert (row["journal"], row["company"], row["state"]) == (
        gmbh.cash_journal,
        gmbh.company,
        "posted",
    )
    assert row["origin"] == f"account.invoice,{posted.erp_id}"


async def test_a_refunded_or_failed_payment_is_refused_without_touching_the_ledger(
    connector: TrytonErp, ledger: TrytonClient
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
    )
    posted = await connector.post_invoice(
        builders.invoice(unique, party, "USD", "PLAT-SEAT"),
        legal_entity="US",
        idempotency_key=unique,
    )
    refunded = builders.payment(
        posted.total, status="refunded", amount_refunded=Money("5.00", "USD")
    )
    failed = builders.payment(posted.total, status="failed", failure_reason="card declined")
    for payment in (refunded, failed):
        with pytest.raises(PermanentError):
            await connector.apply_payment(
                payment, erp_invoice_id=posted.erp_id, idempotency_key=f"x-{unique}"
            )
    assert (
        await ledger.model("account.move").search_count(
            [("description", "=", payment_marker(f"x-{unique}"))]
        )
        == 0
    )
    assert (await connector.invoice_status(posted.erp_id)).amount_due == posted.total


async def test_a_credit_note_is_a_posted_negative_invoice_paying_the_original(
    connector: TrytonErp, ledger: TrytonClient
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique), legal_entity="DE", idempotency_key=unique
    )
    posted = await connector.post_invoice(
        builders.invoice(unique, party, "EUR", "PLAT-SEAT"),
        legal_entity="DE",
        idempotency_key=unique,
    )
    memo = builders.credit_memo(unique, posted.erp_id, Money("7.65", "EUR"))
    credit = await connector.issue_credit_note(
        memo, erp_invoice_id=posted.erp_id, idempotency_key=unique
    )
    [row] = await ledger.model("account.invoice").read(
        [int(credit)], ["type", "state", "total_amount", "reference", "party", "number"]
    )
    assert (row["type"], row["state"], row["total_amount"]) == ("out", "posted", Decimal("-7.65"))
    assert row["reference"] == f"CN-{unique}" and row["party"] == int(party)
    assert row["number"].startswith("GMBH-CN-")
    status = await connector.invoice_status(posted.erp_id)
    assert status.amount_due == Money("80.00", "EUR")


async def test_a_line_may_name_its_item_by_the_catalogs_product_code(
    connector: TrytonErp, ledger: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
    )
    order = builders.order(unique, party, "USD", "PLAT-SEAT")
    line = order.lines[0].model_copy(
        update={"product": Ref(global_id="prod-onboard", external_ids={"product_code": "ONBOARD"})}
    )
    sale = await connector.book_order(
        order.model_copy(update={"lines": (line,)}), legal_entity="US", idempotency_key=unique
    )
    [row] = await ledger.model("sale.line").search_read([("sale", "=", int(sale))], ["product"])
    assert row["product"] == tryton_server.setup.products["ONBOARD"]


async def test_lines_without_a_product_code_the_erp_knows_name_every_tried_code(
    connector: TrytonErp,
) -> None:
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique), legal_entity="DE", idempotency_key=unique
    )
    order = builders.order(unique, party, "EUR", "PLAT-SEAT")
    line = order.lines[0].model_copy(
        update={"product": builders.item("NOPE").model_copy(update={"global_id": "prod-x"})}
    )
    with pytest.raises(MappingError, match="NOPE / prod-x"):
        await connector.book_order(
            order.model_copy(update={"lines": (line,)}), legal_entity="DE", idempotency_key=unique
        )


async def test_a_customer_without_ids_is_named_by_its_name_in_errors(
    connector: TrytonErp,
) -> None:
    unique = _unique()
    nowhere = builders.customer(unique, global_id=None).model_copy(
        update={"address": builders.ADDRESSES["US"].model_copy(update={"country": "ZZ"})}
    )
    with pytest.raises(DataError, match=f"Customer 'Contract Customer {unique}': address.country"):
        await connector.upsert_customer(nowhere, legal_entity="US", idempotency_key=unique)


@pytest.mark.postgres
async def test_postgres_backend_books_posts_and_collects(tryton_pg_server: TrytonEndpoint) -> None:
    unique = _unique()
    config = tryton_config(tryton_pg_server)
    assert config.max_concurrency == 4
    async with TrytonErp(config) as erp:
        customers = [builders.customer(f"{unique}{i}") for i in range(4)]
        parties = await asyncio.gather(
            *(erp.upsert_customer(c, legal_entity="DE", idempotency_key=c.name) for c in customers)
        )
        assert len(set(parties)) == 4
        party = parties[0]
        await erp.book_order(
            builders.order(f"{unique}0", party, "EUR", "PLAT-SEAT"),
            legal_entity="DE",
            idempotency_key=unique,
        )
        invoice = builders.invoice(
            f"{unique}0", party, "EUR", "PLAT-SEAT", tax_rate=Decimal("0.19")
        )
        posted = await erp.post_invoice(invoice, legal_entity="DE", idempotency_key=unique)
        assert posted.total == invoice.total
        await erp.apply_payment(
            builders.payment(posted.total), erp_invoice_id=posted.erp_id, idempotency_key=unique
        )
        status = await erp.invoice_status(posted.erp_id)
        assert (status.status.value, status.amount_due) == ("paid", Money.zero("EUR"))
    assert dt.datetime.now(dt.UTC).year in tryton_pg_server.setup.years


async def test_a_posting_warning_met_once_is_acknowledged_before_the_next_batch_posts(
    connector: TrytonErp,
) -> None:
    """Tryton keys its missing-default-taxes warning by the one invoice: once the connector has
    met it, later postings acknowledge theirs first, so a batch posts in one call that nothing
    refuses (not one refusal per invoice), and its parties' addresses are read in one call."""
    unique = _unique()
    party = await connector.upsert_customer(
        builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
    )
    first = builders.invoice(f"{unique}-0", party, "USD", "PLAT-SEAT")
    await connector.post_invoice(first, legal_entity="US", idempotency_key=f"{unique}-0")
    client = await connector._erp()
    assert "invoice_taxes" in client.warned
    sent: list[str] = []
    send = client.call_without_context

    async def counted(method: str, *params: object) -> object:
        sent.append(method)
        return await send(method, *params)

    client.call_without_context = counted  # type: ignore[method-assign]
    batch = [
        InvoicePosting(
            builders.invoice(f"{unique}-{n}", party, "USD", "PLAT-SEAT"), "US", f"{unique}-{n}"
        )
        for n in (1, 2, 3)
    ]
    results = await connector.post_invoices(batch)
    assert [r.error for r in results] == [None, None, None]
    assert len({r.posted.erp_id for r in results if r.posted}) == 3
    assert sent.count("model.account.invoice.post") == 1
    assert sent.count("model.res.user.warning.skip") == 3
    assert sent.count("model.party.address.search_read") == 1
    assert "model.party.address.search" not in sent
