"""Bookings as confirmed Tryton sales (invoiced manually) and the item master they sell."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from quote2cash.canonical import (
    Order,
    Product,
)
from quote2cash.connectors.tryton import mapping
from quote2cash.connectors.tryton.session import (
    SYSTEM,
    TrytonSession,
    about,
    record_reference,
)
from quote2cash.engine.errors import (
    ConflictError,
    DataError,
)

__all__ = ["Sales"]


class Sales(TrytonSession):
    """The ERP role's bookings and item master: ``book_order`` and ``list_items``."""

    async def list_items(self) -> list[Product]:
        """Every product of the item master (active ones), fetched page by page."""
        erp = await self._erp()
        products: list[Product] = []
        offset = 0
        while True:
            rows = await erp.model("product.product").search_read(
                [],
                ["code", "template.name", "description", "active", "default_uom.name"],
                offset=offset,
                limit=self.config.page_size,
                order=[("id", "ASC")],
            )
            products.extend(mapping.product_from_tryton(r) for r in rows)
            if len(rows) < self.config.page_size:
                return products
            offset += len(rows)

    async def book_order(self, order: Order, *, legal_entity: str, idempotency_key: str) -> str:
        """The id of a confirmed ``sale.sale`` invoiced manually; its ``reference`` (the order
        number, else its billing/global id, else the key) is looked up before any create."""
        async with self._exclusive(
            f"sale:{legal_entity}:{record_reference(order, idempotency_key)}"
        ):
            return await self._book_order(
                order, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def _book_order(self, order: Order, *, legal_entity: str, idempotency_key: str) -> str:
        label = order.label or "Order"
        entity = self._entity(legal_entity, label)
        erp = await self._erp()
        ctx = await self._context(entity)
        sales = erp.model("sale.sale")
        party = self._party_of(order.customer, label)
        reference = record_reference(order, idempotency_key)
        existing = await sales.search_read(
            [("company", "=", entity.company), ("reference", "=", reference)],
            ["state", "party"],
            limit=2,
            context=ctx,
        )
        if len(existing) > 1:
            raise ConflictError(
                f"{label}: several ERP sales have reference {reference!r}", system=SYSTEM
            )
        if existing:
            sale = existing[0]
            if int(sale["party"]) != party:
                raise ConflictError(
                    f"{label}: ERP sale {sale['id']} with reference {reference!r} belongs to "
                    f"party {sale['party']}, not {party}",
                    system=SYSTEM,
                )
            await self._confirm_sale(int(sale["id"]), str(sale["state"]), label, ctx)
            return str(sale["id"])
        items = await self._resolve_items(
            [(f"lines[{i}]", line.product) for i, line in enumerate(order.lines)], label
        )
        address = await self._invoice_address(party, label, ctx)
        lines = []
        for line, item in zip(order.lines, items, strict=True):
            amount = mapping.order_line_amount(line)
            lines.append(
                {
                    "type": "line",
                    "product": item.id,
                    "unit": item.unit,
                    "quantity": amount.quantity,
                    "unit_price": amount.unit_price,
                    "description": line.description or item.code,
                }
            )
        sale_date = order.booked_at.date() if order.booked_at else order.start_date
        with about(label):
            sale_id = await sales.create_one(
                {
                    "company": entity.company,
                    "party": party,
                    "currency": await self._currency(order.currency, label),
                    "invoice_address": address,
                    "shipment_address": address,
                    "sale_date": sale_date,
                    "invoice_method": "manual",
                    "reference": reference,
                    "description": f"{label} ({mapping.idempotency_marker(idempotency_key)})",
                    "lines": [("create", lines)],
                },
                context=ctx,
            )
            [row] = await sales.read([sale_id], ["total_amount", "state"], context=ctx)
            if Decimal(row["total_amount"]) != order.total.amount:
                await sales.delete([sale_id], context=ctx)
                raise DataError(
                    f"{label}: the ERP computes a total of {row['total_amount']} {order.currency} "
                    f"but the order totals {order.total}; nothing was booked",
                    system=SYSTEM,
                )
        await self._confirm_sale(sale_id, str(row["state"]), label, ctx)
        return str(sale_id)

    async def _confirm_sale(
        self, sale: int, state: str, label: str, ctx: Mapping[str, Any]
    ) -> None:
        erp = await self._erp()
        sales = erp.model("sale.sale")
        with about(label):
            if state == "draft":
                await sales.execute_button("quote", [sale], context=ctx)
                state = "quotation"
            if state == "quotation":
                await sales.execute_button("confirm", [sale], context=ctx)
            elif state == "cancelled":
                raise ConflictError(f"{label}: ERP sale {sale} is cancelled", system=SYSTEM)
