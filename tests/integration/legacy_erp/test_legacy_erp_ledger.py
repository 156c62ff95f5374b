"""The Ledger role on the legacy ERP: what reconciliation reads, paged, keyed by shared numbers."""

from __future__ import annotations

from decimal import Decimal

from contract.erp import builders
from integration.legacy_erp.conftest import config_for
from quote2cash.canonical import Money
from quote2cash.connectors.legacy_erp import LegacyErp, LegacyErpClient
from quote2cash.connectors.roles import LedgerEntry, LedgerKind
from quote2cash.demo.erp_reader import LegacyReader
from quote2cash.sandbox.legacy_erp import LegacyErpEndpoint


async def _all(erp: LegacyErp, kind: LedgerKind) -> list[LedgerEntry]:
    entries: list[LedgerEntry] = []
    cursor = None
    while True:
        page = await erp.ledger(kind, cursor=cursor, limit=2)
        entries.extend(page.items)
        if page.next_cursor is None:
            return entries
        cursor = page.next_cursor


async def test_the_ledger_shows_orders_invoices_and_refunded_payments(
    endpoint: LegacyErpEndpoint, unique: str
) -> None:
    async with LegacyErp(config_for(endpoint)) as erp:
        party = await erp.upsert_customer(
            builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
        )
        order = builders.order(unique, party, "USD", "PLAT-SEAT")
        booked = await erp.book_order(order, legal_entity="US", idempotency_key=unique)
        posted = await erp.post_invoice(
            builders.invoice(unique, party, "USD", "PLAT-SEAT"),
            legal_entity="US",
            idempotency_key=unique,
        )
        charge = f"ch_{unique}"
        paid = builders.payment(posted.total, external_ids={"billing": charge})
        await erp.apply_payment(paid, erp_invoice_id=posted.erp_id, idempotency_key="p" + unique)
        refund = builders.refund(posted.total, Money("30.00", "USD"), charge)
        await erp.reverse_payment(refund, erp_invoice_id=posted.erp_id, idempotency_key=unique)

        contracts = {e.contract: e for e in await _all(erp, LedgerKind.CONTRACT)}
        assert contracts[f"SO-{unique}"].id == booked
        assert contracts[f"SO-{unique}"].total == Money("99.99", "USD")
        invoices = {e.number: e for e in await _all(erp, LedgerKind.INVOICE)}
        invoice = invoices[f"INV-{unique}"]
        assert (invoice.id, invoice.customer, invoice.entity) == (posted.erp_id, party, "US")
        assert invoice.balance == Money("30.00", "USD") and invoice.status == "open"
        payments = [e for e in await _all(erp, LedgerKind.PAYMENT) if e.links.get("billing")]
        mine = [e for e in payments if e.links["billing"] == charge]
        assert len(mine) == 1
        assert (mine[0].total, mine[0].refunded) == (posted.total, Money("30.00", "USD"))
        assert mine[0].links["invoice"] == posted.erp_id
        customers = {e.id: e for e in await _all(erp, LedgerKind.CUSTOMER)}
        assert customers[party].links == {"hub": f"cus-{unique}"}


async def test_finance_reads_a_customers_books_with_order_lines_through_the_neutral_reader(
    endpoint: LegacyErpEndpoint, unique: str
) -> None:
    """What the lifecycle model and the demo read: documents, sales and each sale's lines (the
    one-time items among them), for the customers of one name only."""
    async with LegacyErp(config_for(endpoint)) as erp:
        party = await erp.upsert_customer(
            builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
        )
        await erp.upsert_customer(
            builders.customer("x" + unique, "US"), legal_entity="US", idempotency_key="x" + unique
        )
        seats = builders.order(unique, party, "USD", "PLAT-SEAT").lines[0]
        onboarding = seats.model_copy(
            update={
                "product": builders.item("ONBOARD"),
                "quantity": 1,
                "unit_price": Money("250.00", "USD"),
                "amount": Money("250.00", "USD"),
            }
        )
        order = builders.order(unique, party, "USD", "PLAT-SEAT", lines=(seats, onboarding))
        await erp.book_order(order, legal_entity="US", idempotency_key=unique)
        posted = await erp.post_invoice(
            builders.invoice(unique, party, "USD", "PLAT-SEAT"),
            legal_entity="US",
            idempotency_key=unique,
        )
    client = LegacyErpClient(config_for(endpoint))
    try:
        books = await LegacyReader(client).customer_books(f"Contract Customer {unique}")
    finally:
        await client.close()
    assert books.customers == 1 and not books.keeps_service_periods
    [document] = books.documents
    assert (document.reference, document.status, document.entity) == (f"INV-{unique}", "open", "US")
    assert (document.total, document.due) == (posted.total.amount, posted.total.amount)
    assert books.sales == [(f"SO-{unique}", Decimal("349.99"))]
    assert books.sale_lines == [("PLAT-SEAT", Decimal("99.99")), ("ONBOARD", Decimal("250.00"))]
