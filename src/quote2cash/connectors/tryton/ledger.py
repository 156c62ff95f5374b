"""Ledger reads for reconciliation: the receivable documents Tryton holds, page by page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from quote2cash.connectors.roles import (
    LedgerEntry,
    LedgerKind,
    Page,
)
from quote2cash.connectors.tryton import mapping
from quote2cash.connectors.tryton.session import TrytonSession

__all__ = ["Ledger"]


class Ledger(TrytonSession):
    """The ERP role's ``ledger`` read."""

    async def ledger(
        self,
        kind: LedgerKind,
        *,
        since: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[LedgerEntry]:
        """Hub-onboarded parties, booked sales or posted customer invoices, ``limit`` at a time
        (``cursor``: the offset); ``since`` keeps those created at or after it."""
        if kind is LedgerKind.PAYMENT:
            return Page([])  # applied to their invoices: read there, as what is still owed
        erp = await self._erp()
        offset = int(cursor) if cursor and cursor.isdigit() else 0
        created = [("create_date", ">=", since)] if since else []
        order = [("id", "ASC")]
        if kind is LedgerKind.CUSTOMER:
            rows = await erp.model("party.identifier").search_read(
                [("code", "like", f"{mapping.GLOBAL_ID_MARK}%"), *created],
                ["party", "code"],
                offset=offset,
                limit=limit,
                order=order,
            )
            entries = [mapping.ledger_party(r) for r in rows]
        elif kind is LedgerKind.CONTRACT:
            rows = await erp.model("sale.sale").search_read(
                [("state", "in", ["confirmed", "processing", "done"]), *created],
                list(mapping.LEDGER_SALE_FIELDS),
                offset=offset,
                limit=limit,
                order=order,
            )
            entries = [mapping.ledger_sale(r, self._entity_code(r["company"])) for r in rows]
        else:
            rows = await erp.model("account.invoice").search_read(
                [("type", "=", "out"), ("state", "in", ["posted", "paid"]), *created],
                list(mapping.LEDGER_INVOICE_FIELDS),
                offset=offset,
                limit=limit,
                order=order,
            )
            entries = [mapping.ledger_invoice(r, self._entity_code(r["company"])) for r in rows]
        return Page(entries, str(offset + len(rows)) if len(rows) == limit else None)

    def _entity_code(self, company: Any) -> str | None:
        found = (
            code
            for code, entity in self.config.legal_entities.items()
            if entity.company == int(company)
        )
        return next(found, None)
