"""Credit notes against an invoice, and customer credit: open credit notes used on later ones."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from quote2cash.canonical import (
    CreditMemo,
    Money,
)
from quote2cash.connectors.roles import (
    PostedInvoice,
)
from quote2cash.connectors.tryton import credits, mapping
from quote2cash.connectors.tryton.config import TrytonLegalEntity
from quote2cash.connectors.tryton.invoices import Invoices, posted_invoice
from quote2cash.connectors.tryton.session import SYSTEM, about, record_reference, utc_today
from quote2cash.engine.errors import (
    ConflictError,
    DataError,
)

__all__ = ["CreditNotes"]


class CreditNotes(Invoices):
    """The ERP role's credit notes and customer credit (``issue_credit_note`` and the rest)."""

    async def issue_credit_note(
        self, memo: CreditMemo, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        """The id of a posted credit note (an ``out`` invoice of negative lines, ``reference``
        the memo number) whose receivable line then pays the credited invoice when still open."""
        async with self._exclusive(f"collect:{erp_invoice_id}"):
            return await self._issue_credit_note(
                memo, erp_invoice_id=erp_invoice_id, idempotency_key=idempotency_key
            )

    async def post_customer_credit(
        self, memo: CreditMemo, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        """A posted credit note of ``memo.customer`` that pays no invoice: open credit, used by
        ``apply_customer_credit``; ``reference`` the memo number, never posted twice."""
        reference = record_reference(memo, idempotency_key)
        async with self._exclusive(f"invoice:{legal_entity}:{reference}"):
            return await self._post_customer_credit(
                memo, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def apply_customer_credit(
        self, erp_invoice_id: str, amount: Money, *, idempotency_key: str
    ) -> str:
        """The id of the transfer move paying ``amount`` of the invoice from the customer's open
        credit notes, oldest first (see ``credits``); the same key books it once."""
        row = await self._read_invoice(erp_invoice_id)
        label = f"credit applied to ERP invoice {row.get('number') or erp_invoice_id}"
        entity = self._entity_of_company(int(row["company"]), label)
        async with (
            self._exclusive(f"collect:{erp_invoice_id}"),
            self._exclusive(f"credit:{row['party']}"),
        ):
            row = await self._read_invoice(erp_invoice_id)
            ctx = await self._context(entity)
            with about(label):
                move = await credits.apply_credit(
                    await self._erp(),
                    row,
                    entity,
                    amount,
                    key=idempotency_key,
                    label=label,
                    ctx=ctx,
                    reconcile=lambda ids: self._reconcile(ids, label, ctx),
                    today=utc_today(),
                )
        return str(move)

    async def _issue_credit_note(
        self, memo: CreditMemo, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        label = memo.label or "CreditMemo"
        original = await self._read_invoice(erp_invoice_id)
        entity = self._entity_of_company(int(original["company"]), label)
        currency = str(original["currency."]["code"])
        if memo.currency != currency:
            raise DataError(
                f"{label}: currency {memo.currency} differs from ERP invoice "
                f"{original.get('number') or original['id']} in {currency}",
                system=SYSTEM,
            )
        if original["state"] not in ("posted", "paid"):
            raise ConflictError(
                f"{label}: ERP invoice {original['id']} is {original['state']}; only posted "
                "invoices can be credited",
                system=SYSTEM,
            )
        reference = record_reference(memo, idempotency_key)
        existing = await self._left_by_earlier_attempt(
            entity, reference, int(original["party"]), label
        )
        if existing is not None and existing["state"] in ("posted", "paid"):
            return str(existing["id"])
        ctx = await self._context(entity)
        if existing is not None:
            credit_id = int(existing["id"])
        else:
            credit_id = await self._draft_credit_note(
                memo,
                entity,
                {
                    "party": int(original["party"]),
                    "invoice_address": int(original["invoice_address"]),
                    "account": int(original["account"]),
                    "journal": original["journal"] or entity.revenue_journal,
                    "reference": reference,
                    "description": (
                        f"{label} on {original.get('number')} "
                        f"({mapping.idempotency_marker(idempotency_key)})"
                    )[:250],
                },
                f"Credit on {original.get('number')}",
                label,
            )
        await self._post_checked(
            credit_id, entity, label, expected_total=-memo.total, expected_tax=-memo.tax
        )
        await self._apply_credit(credit_id, original, memo.total, label, ctx)
        return str(credit_id)

    async def _draft_credit_note(
        self,
        memo: CreditMemo,
        entity: TrytonLegalEntity,
        header: Mapping[str, Any],
        default_description: str,
        label: str,
    ) -> int:
        """A draft ``out`` invoice of the memo's lines negated (``header``: party, address,
        account, journal, reference, description)."""
        erp = await self._erp()
        ctx = await self._context(entity)
        postings = mapping.tax_postings(
            [(line.amount, line.tax, line.tax_rate) for line in memo.lines],
            memo.tax,
            pieces=[line.billed_lines for line in memo.lines],
        )
        taxes = await self._tax_lines(
            entity, postings, label, credit=True, total=memo.total, tax=memo.tax
        )
        lines = [
            {
                "type": "line",
                "quantity": -1.0,
                "unit_price": line.amount.amount,
                "account": entity.revenue_account,
                "description": line.description or default_description,
            }
            for line in memo.lines
        ]
        with about(label):
            return await erp.model("account.invoice").create_one(
                {
                    "type": "out",
                    "company": entity.company,
                    "currency": await self._currency(memo.currency, label),
                    "invoice_date": min(memo.issued_at.date(), utc_today()),
                    **header,
                    "lines": [("create", lines)],
                    "taxes": [("create", taxes)] if taxes else [],
                },
                context=ctx,
            )

    async def _post_customer_credit(
        self, memo: CreditMemo, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        label = memo.label or "CreditMemo"
        entity = self._entity(legal_entity, label)
        party = self._party_of(memo.customer, label)
        reference = record_reference(memo, idempotency_key)
        existing = await self._left_by_earlier_attempt(entity, reference, party, label)
        if existing is not None:
            if existing["state"] in ("posted", "paid"):
                return posted_invoice(existing)
            credit_id = int(existing["id"])
        else:
            ctx = await self._context(entity)
            credit_id = await self._draft_credit_note(
                memo,
                entity,
                {
                    "party": party,
                    "invoice_address": await self._invoice_address(party, label, ctx),
                    "account": entity.receivable_account,
                    "journal": entity.revenue_journal,
                    "reference": reference,
                    "description": (
                        f"{label}: customer credit ({mapping.idempotency_marker(idempotency_key)})"
                    )[:250],
                },
                f"Credit {memo.number or reference}",
                label,
            )
        return await self._post_checked(
            credit_id, entity, label, expected_total=-memo.total, expected_tax=-memo.tax
        )

    async def _apply_credit(
        self,
        credit_id: int,
        original: Mapping[str, Any],
        total: Money,
        label: str,
        ctx: Mapping[str, Any],
    ) -> None:
        """Lower what the original invoice still owes: the credit's receivable line pays it."""
        erp = await self._erp()
        invoices = erp.model("account.invoice")
        [current] = await invoices.read(
            [int(original["id"])], ["state", "amount_to_pay"], context=ctx
        )
        if current["state"] != "posted" or Decimal(current["amount_to_pay"]) < total.amount:
            return
        [credit] = await invoices.read([credit_id], ["lines_to_pay"], context=ctx)
        if not credit["lines_to_pay"]:
            return
        with about(label):
            await invoices.write(
                [int(original["id"])],
                {"payment_lines": [("add", list(credit["lines_to_pay"]))]},
                context=ctx,
            )
