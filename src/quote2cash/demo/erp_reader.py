"""The ERP as finance reads it, in neutral terms: Tryton over its JSON-RPC as admin, the legacy
ERP over its SOAP service. The demo and the lifecycle model check the hub's work through this,
never through the hub's store nor one ERP's models, so the same checks hold on either ERP."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Final, Protocol

from quote2cash.connectors.legacy_erp import LegacyErpClient
from quote2cash.connectors.tryton.client import TrytonClient

ZERO: Final = Decimal(0)
TRYTON_ENTITIES: Final = {"Q2C Inc.": "US", "Q2C GmbH": "DE"}
"""The sandbox Tryton's companies -> the group's legal entity codes."""


@dataclass(frozen=True)
class ErpDocument:
    """A receivable document (invoice, credit note, customer credit) as the ERP shows it."""

    reference: str
    """The hub's reference: billing's invoice or credit note number."""
    status: str
    """``open`` or ``paid``."""
    currency: str
    entity: str
    total: Decimal
    tax: Decimal
    due: Decimal
    """What is still owed on it (negative: credit not yet used)."""
    period: tuple[date, date] | None = None
    """First and last day served over its lines, when the ERP keeps service periods."""


@dataclass
class CustomerBooks:
    """Everything the ERP holds for customers of one name."""

    customers: int = 0
    documents: list[ErpDocument] = field(default_factory=list)
    sales: list[tuple[str, Decimal]] = field(default_factory=list)
    """(reference, total) of each booked sale: the contract and its amendment deltas."""
    sale_lines: list[tuple[str, Decimal]] = field(default_factory=list)
    """(item code, amount) of every line of those sales."""
    keeps_service_periods: bool = True
    """False for an ERP whose documents carry no service period (the legacy ERP)."""


class ErpReader(Protocol):
    """What the demo and the lifecycle model read back from the ERP."""

    async def invoice_amounts(self, reference: str) -> list[tuple[Decimal, Decimal]]:
        """(before tax, total) of each customer invoice with this reference (billing's number)."""
        ...

    async def sale_totals(self, contract: str) -> list[Decimal]:
        """The total of each sale booked with this reference (the contract number)."""
        ...

    async def customers_named(self, name: str) -> int: ...

    async def customer_books(self, name: str) -> CustomerBooks:
        """The customers called ``name``, their posted documents and their booked sales."""
        ...


class TrytonReader:
    def __init__(self, erp: TrytonClient) -> None:
        self.erp = erp

    async def invoice_amounts(self, reference: str) -> list[tuple[Decimal, Decimal]]:
        rows = await self.erp.model("account.invoice").search_read(
            [("reference", "=", reference), ("type", "=", "out")],
            ["untaxed_amount", "total_amount"],
        )
        return [(Decimal(r["untaxed_amount"]), Decimal(r["total_amount"])) for r in rows]

    async def sale_totals(self, contract: str) -> list[Decimal]:
        rows = await self.erp.model("sale.sale").search_read(
            [("reference", "=", contract)], ["total_amount"]
        )
        return [Decimal(r["total_amount"]) for r in rows]

    async def customers_named(self, name: str) -> int:
        return len(await self.erp.model("party.party").search([("name", "=", name)]))

    async def customer_books(self, name: str) -> CustomerBooks:
        books = CustomerBooks()
        parties = await self.erp.model("party.party").search([("name", "=", name)])
        books.customers = len(parties)
        if not parties:
            return books
        rows = await self.erp.model("account.invoice").search_read(
            [("party", "in", parties), ("type", "=", "out"), ("state", "in", ["posted", "paid"])],
            [
                "reference",
                "state",
                "total_amount",
                "tax_amount",
                "amount_to_pay",
                "currency.code",
                "company.rec_name",
                "lines",
            ],
        )
        for row in rows:
            lines = await self.erp.model("account.invoice.line").read(
                list(row["lines"]), ["defer_from", "defer_to"]
            )
            spans = [(ln["defer_from"], ln["defer_to"]) for ln in lines if ln.get("defer_from")]
            company = str(row["company."]["rec_name"])
            paid = row["state"] == "paid"
            books.documents.append(
                ErpDocument(
                    reference=str(row["reference"]),
                    status="paid" if paid else "open",
                    currency=str(row["currency."]["code"]),
                    entity=TRYTON_ENTITIES.get(company, company),
                    total=Decimal(row["total_amount"]),
                    tax=Decimal(row["tax_amount"]),
                    due=ZERO if paid else Decimal(row["amount_to_pay"]),
                    period=(min(s for s, _ in spans), max(e for _, e in spans)) if spans else None,
                )
            )
        sales = await self.erp.model("sale.sale").search_read(
            [("party", "in", parties), ("state", "in", ["confirmed", "processing", "done"])],
            ["reference", "total_amount", "lines"],
        )
        books.sales = [(str(s["reference"]), Decimal(s["total_amount"])) for s in sales]
        lines = await self.erp.model("sale.line").read(
            [line for s in sales for line in s["lines"]], ["amount", "product.code"]
        )
        books.sale_lines = [
            (str((ln.get("product.") or {}).get("code") or ""), Decimal(ln["amount"]))
            for ln in lines
        ]
        return books


class LegacyReader:
    """Reads over the legacy ERP's SOAP service (its listings are small in the sandbox)."""

    def __init__(self, client: LegacyErpClient) -> None:
        self.client = client

    async def _all(self, operation: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = await self.client.call(operation, len(rows), 500, None) or []
            rows.extend(page)
            if len(page) < 500:
                return rows

    async def invoice_amounts(self, reference: str) -> list[tuple[Decimal, Decimal]]:
        number = await self.client.call("FindDocument", "invoice", reference)
        if not number:
            return []
        row = await self.client.call("InvoiceStatus", number)
        return [(Decimal(row["total"]) - Decimal(row["tax"]), Decimal(row["total"]))]

    async def sale_totals(self, contract: str) -> list[Decimal]:
        return [
            Decimal(r["total"]) for r in await self._all("ListOrders") if r["reference"] == contract
        ]

    async def customers_named(self, name: str) -> int:
        return sum(1 for r in await self._all("ListCustomers") if r["name"] == name)

    async def customer_books(self, name: str) -> CustomerBooks:
        books = CustomerBooks(keeps_service_periods=False)
        numbers = {r["number"] for r in await self._all("ListCustomers") if r["name"] == name}
        books.customers = len(numbers)
        if not numbers:
            return books
        for row in await self._all("ListInvoices"):
            if row["customer"] not in numbers:
                continue
            paid = row["status"] == "paid"
            books.documents.append(
                ErpDocument(
                    reference=str(row["reference"]),
                    status="paid" if paid else "open",
                    currency=str(row["currency"]),
                    entity=str(row["entity"]),
                    total=Decimal(row["total"]),
                    tax=Decimal(row["tax"]),
                    due=ZERO if paid else Decimal(row["due"]),
                )
            )
        for order in await self._all("ListOrders"):
            if order["customer"] not in numbers:
                continue
            books.sales.append((str(order["reference"]), Decimal(order["total"])))
            lines = order.get("lines") or []
            if isinstance(lines, dict):  # zeep's wrapper of a SOAP array
                lines = lines.get("OrderLine") or []
            books.sale_lines += [(str(ln["item"]), Decimal(ln["amount"])) for ln in lines]
        return books
