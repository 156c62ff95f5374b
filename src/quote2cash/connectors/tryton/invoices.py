"""Billing's invoices posted as Tryton customer invoices, to the cent and once per reference."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any, Final

from quote2cash.canonical import (
    Invoice,
    InvoiceStatus,
    Money,
)
from quote2cash.connectors.roles import (
    InvoicePosting,
    InvoicePostingResult,
    InvoiceStatusReport,
    PostedInvoice,
)
from quote2cash.connectors.tryton import mapping
from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.connectors.tryton.config import TrytonLegalEntity
from quote2cash.connectors.tryton.session import (
    SYSTEM,
    TrytonSession,
    about,
    record_reference,
    utc_today,
)
from quote2cash.engine.errors import (
    ConflictError,
    DataError,
    IntegrationError,
    MappingError,
)

_log = logging.getLogger(__name__)

__all__ = ["INVOICE_FIELDS", "POSTING_WARNINGS", "Invoices", "posted_invoice"]

PER_INVOICE_WARNINGS: Final = ("invoice_taxes",)
"""Posting warnings Tryton keys by the one invoice: once a session has met one, the next
postings acknowledge theirs before posting (each would otherwise fail, be acknowledged, run
again; a batch of B fails B times)."""
POSTING_WARNINGS: Final = (
    # the sandbox cannot reach the EU's VIES service to validate VAT numbers
    "account.invoice eu_vat valid",
    # lines posted without the product's default taxes (billing decided the tax)
    "invoice_taxes",
    # billing's due date already passed when the ERP gets the invoice (e.g. after a window)
    "invoice_payment_term",
)
INVOICE_FIELDS: Final = (
    "state",
    "number",
    "reference",
    "party",
    "company",
    "currency.code",
    "untaxed_amount",
    "tax_amount",
    "total_amount",
    "amount_to_pay",
    "lines_to_pay",
)


class Invoices(TrytonSession):
    """The ERP role's invoices (``post_invoice``, ``invoice_status``) and their shared posting."""

    async def post_invoice(
        self, invoice: Invoice, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        """A posted customer invoice whose ``reference`` is the billing number (else an id, else
        the key); an invoice already posted with it is returned as is, never posted twice."""
        reference = record_reference(invoice, idempotency_key)
        async with self._exclusive(f"invoice:{legal_entity}:{reference}"):
            return await self._post_invoice(
                invoice, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def post_invoices(self, postings: Sequence[InvoicePosting]) -> list[InvoicePostingResult]:
        """Per legal entity one search of the references, one create of the new drafts, one read
        to check their totals, one ``post`` and one read back: a batch of B costs ~5 calls, not
        ~5 B. Any batched call that fails sends each of its items down ``post_invoice``'s own
        path alone, so one bad invoice (refused, or stopped by Tryton) fails only itself."""
        results: list[InvoicePostingResult | None] = [None] * len(postings)
        first_of: dict[tuple[str, str], int] = {}
        by_entity: dict[str, list[int]] = {}
        for index, posting in enumerate(postings):
            key = (posting.legal_entity, record_reference(posting.invoice, posting.idempotency_key))
            if key not in first_of:  # the same reference twice: its first item posts it
                first_of[key] = index
                by_entity.setdefault(posting.legal_entity, []).append(index)
        async with AsyncExitStack() as locks:
            # in name order, so two batches sharing references cannot wait on each other
            for entity_code, reference in sorted(first_of):
                await locks.enter_async_context(
                    self._exclusive(f"invoice:{entity_code}:{reference}")
                )
            for indexes in by_entity.values():
                await self._post_batch(postings, indexes, results)
        out: list[InvoicePostingResult] = []
        for posting in postings:
            key = (posting.legal_entity, record_reference(posting.invoice, posting.idempotency_key))
            result = results[first_of[key]]
            assert result is not None
            out.append(result)
        return out

    async def _post_alone(
        self, posting: InvoicePosting, index: int, results: list[InvoicePostingResult | None]
    ) -> None:
        try:
            posted = await self._post_invoice(
                posting.invoice,
                legal_entity=posting.legal_entity,
                idempotency_key=posting.idempotency_key,
            )
        except IntegrationError as exc:
            results[index] = InvoicePostingResult(error=exc)
        else:
            results[index] = InvoicePostingResult(posted=posted)

    async def _post_batch(
        self,
        postings: Sequence[InvoicePosting],
        indexes: Sequence[int],
        results: list[InvoicePostingResult | None],
    ) -> None:
        """Post the items ``indexes`` (one legal entity, distinct references) into ``results``."""
        alone: list[int] = []  # items that go down the one-at-a-time path
        prepared: list[tuple[int, str, int, str]] = []  # index, label, party, reference
        entity: TrytonLegalEntity | None = None
        for index in indexes:
            posting = postings[index]
            label = posting.invoice.label or "Invoice"
            try:
                entity = self._entity(posting.legal_entity, label)
                party = self._party_of(posting.invoice.customer, label)
                if not posting.invoice.lines:
                    raise DataError(
                        f"{label}: an invoice without lines cannot be posted", system=SYSTEM
                    )
            except IntegrationError as exc:
                results[index] = InvoicePostingResult(error=exc)
                continue
            reference = record_reference(posting.invoice, posting.idempotency_key)
            prepared.append((index, label, party, reference))
        if entity is None or not prepared:
            return
        try:
            erp = await self._erp()
            ctx = await self._context(entity)
            invoices = erp.model("account.invoice")
            existing = await invoices.search_read(
                [
                    ("company", "=", entity.company),
                    ("type", "=", "out"),
                    ("reference", "in", [reference for *_, reference in prepared]),
                ],
                ["reference"],
                context=ctx,
            )
        except IntegrationError:
            for index, *_ in prepared:
                await self._post_alone(postings[index], index, results)
            return
        # an earlier attempt left a document: resume it alone (checks party, state, duplicates)
        found = {str(row["reference"]) for row in existing}
        addresses = await self._batch_addresses(
            [party for _, _, party, reference in prepared if reference not in found], ctx
        )
        new: list[tuple[int, str, dict[str, Any]]] = []
        for index, label, party, reference in prepared:
            if reference in found:
                alone.append(index)
                continue
            posting = postings[index]
            try:
                values = await self._invoice_values(
                    posting.invoice,
                    entity,
                    party,
                    reference,
                    posting.idempotency_key,
                    label,
                    address=addresses.get(party),
                )
            except IntegrationError as exc:
                results[index] = InvoicePostingResult(error=exc)
                continue
            new.append((index, label, values))
        ids: list[int] = []
        if new:
            try:
                ids = await invoices.create([values for *_, values in new], context=ctx)
            except IntegrationError:
                alone.extend(index for index, *_ in new)
                new, ids = [], []
        to_post: list[tuple[int, int]] = []  # index, draft id
        if ids:
            try:
                rows = {
                    int(row["id"]): row
                    for row in await invoices.read(ids, list(INVOICE_FIELDS), context=ctx)
                }
                wrong: list[int] = []
                for (index, label, _), invoice_id in zip(new, ids, strict=True):
                    invoice = postings[index].invoice
                    total = Decimal(rows[invoice_id]["total_amount"])
                    tax = Decimal(rows[invoice_id]["tax_amount"])
                    if total != invoice.total.amount or tax != invoice.tax.amount:
                        wrong.append(invoice_id)
                        results[index] = InvoicePostingResult(
                            error=DataError(
                                f"{label}: the ERP computes total {total} (tax {tax}) "
                                f"{invoice.total.currency} but billing's total is "
                                f"{invoice.total} (tax {invoice.tax}); not posted, the draft "
                                "was deleted",
                                system=SYSTEM,
                            )
                        )
                    else:
                        to_post.append((index, invoice_id))
                if wrong:
                    await invoices.delete(wrong, context=ctx)
            except IntegrationError:
                # the drafts exist under their references: the single path resumes each one
                alone.extend(index for index, *_ in new if results[index] is None)
                to_post = []
        if to_post:
            try:
                await self._acknowledge_expected(erp, [invoice_id for _, invoice_id in to_post])
                async with self._exclusive("post"):
                    await invoices.execute_button(
                        "post",
                        [invoice_id for _, invoice_id in to_post],
                        context=ctx,
                        allow_warnings=POSTING_WARNINGS,
                    )
                rows = {
                    int(row["id"]): row
                    for row in await invoices.read(
                        [invoice_id for _, invoice_id in to_post],
                        list(INVOICE_FIELDS),
                        context=ctx,
                    )
                }
            except IntegrationError:
                # Tryton posts a call's records in one transaction: one refusal undoes them all
                alone.extend(index for index, _ in to_post)
            else:
                for index, invoice_id in to_post:
                    row = rows.get(invoice_id)
                    if row is not None and row["state"] in ("posted", "paid"):
                        results[index] = InvoicePostingResult(posted=posted_invoice(row))
                    else:
                        alone.append(index)
        if alone:
            _log.info(
                "tryton invoice batch: %d of %d item(s) posted alone", len(alone), len(indexes)
            )
        for index in alone:
            await self._post_alone(postings[index], index, results)

    async def _batch_addresses(
        self, parties: Sequence[int], ctx: Mapping[str, Any]
    ) -> dict[int, int]:
        """The batch's parties' invoice addresses in one call (none found: each item looks its
        own up, and a failed call leaves that to them too)."""
        if len(parties) < 2:
            return {}
        try:
            return await self._invoice_addresses(parties, ctx)
        except IntegrationError:
            return {}

    async def _acknowledge_expected(self, erp: TrytonClient, invoice_ids: Sequence[int]) -> None:
        """The per-invoice warnings this session has met before, acknowledged ahead of the post
        (each is one that posting accepts anyway)."""
        for kind in PER_INVOICE_WARNINGS:
            if kind in erp.warned:
                await erp.acknowledge_for(kind, "account.invoice", invoice_ids)

    async def _left_by_earlier_attempt(
        self, entity: TrytonLegalEntity, reference: str, party: int, label: str
    ) -> dict[str, Any] | None:
        """The document an earlier attempt of this step left under ``reference``, to resume; one
        of another party, or cancelled by a person, is a conflict rather than a second copy."""
        existing = await self._find_invoice(entity, reference, label)
        if existing is None:
            return None
        if int(existing["party"]) != party:
            raise ConflictError(
                f"{label}: ERP document {existing['id']} with reference {reference!r} belongs "
                f"to party {existing['party']}, not {party}",
                system=SYSTEM,
            )
        if existing["state"] == "cancelled":
            raise ConflictError(
                f"{label}: ERP document {existing['id']} with reference {reference!r} is cancelled",
                system=SYSTEM,
            )
        return existing

    async def _post_invoice(
        self, invoice: Invoice, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        label = invoice.label or "Invoice"
        entity = self._entity(legal_entity, label)
        party = self._party_of(invoice.customer, label)
        reference = record_reference(invoice, idempotency_key)
        existing = await self._left_by_earlier_attempt(entity, reference, party, label)
        if existing is not None:
            if existing["state"] in ("posted", "paid"):
                return posted_invoice(existing)
            invoice_id = int(existing["id"])
        else:
            if not invoice.lines:
                raise DataError(
                    f"{label}: an invoice without lines cannot be posted", system=SYSTEM
                )
            invoice_id = await self._create_invoice(
                invoice, entity, party, reference, idempotency_key, label
            )
        return await self._post_checked(
            invoice_id, entity, label, expected_total=invoice.total, expected_tax=invoice.tax
        )

    async def _find_invoice(
        self, entity: TrytonLegalEntity, reference: str, label: str
    ) -> dict[str, Any] | None:
        erp = await self._erp()
        rows = await erp.model("account.invoice").search_read(
            [
                ("company", "=", entity.company),
                ("type", "=", "out"),
                ("reference", "=", reference),
            ],
            list(INVOICE_FIELDS),
            limit=2,
            context=await self._context(entity),
        )
        if len(rows) > 1:
            raise ConflictError(
                f"{label}: several ERP invoices have reference {reference!r}", system=SYSTEM
            )
        return rows[0] if rows else None

    async def _create_invoice(
        self,
        invoice: Invoice,
        entity: TrytonLegalEntity,
        party: int,
        reference: str,
        key: str,
        label: str,
    ) -> int:
        erp = await self._erp()
        values = await self._invoice_values(invoice, entity, party, reference, key, label)
        with about(label):
            return await erp.model("account.invoice").create_one(
                values, context=await self._context(entity)
            )

    async def _invoice_values(
        self,
        invoice: Invoice,
        entity: TrytonLegalEntity,
        party: int,
        reference: str,
        key: str,
        label: str,
        *,
        address: int | None = None,
    ) -> dict[str, Any]:
        """The ``account.invoice`` create values of ``invoice`` (a draft; checked before any);
        ``address``: the party's invoice address when the caller looked it up already."""
        ctx = await self._context(entity)
        postings = mapping.tax_postings(
            [(line.amount, line.tax, line.tax_rate) for line in invoice.lines], invoice.tax
        )
        taxes = await self._tax_lines(
            entity, postings, label, credit=False, total=invoice.total, tax=invoice.tax
        )
        refs = [
            (f"lines[{i}]", line.product)
            for i, line in enumerate(invoice.lines)
            if line.product is not None
        ]
        items = iter(await self._resolve_items(refs, label))
        lines: list[dict[str, Any]] = []
        for line in invoice.lines:
            amount = mapping.invoice_line_amount(line)
            values: dict[str, Any] = {
                "type": "line",
                "quantity": amount.quantity,
                "unit_price": amount.unit_price,
                "account": entity.revenue_account,
                "description": line.description or f"Service {line.service_start}",
            }
            if line.product is not None:
                item = next(items)
                values["product"] = item.id
                values["unit"] = item.unit
                if item.service and line.service_last_day > line.service_start:
                    values["defer_from"] = line.service_start
                    values["defer_to"] = line.service_last_day
            lines.append(values)
        issued = invoice.issued_at.date() if invoice.issued_at else utc_today()
        return {
            "type": "out",
            "company": entity.company,
            "currency": await self._currency(invoice.currency, label),
            "party": party,
            "invoice_address": address or await self._invoice_address(party, label, ctx),
            "account": entity.receivable_account,
            "journal": entity.revenue_journal,
            "invoice_date": min(issued, utc_today()),
            "payment_term_date": invoice.due_date,
            "reference": reference,
            "description": f"{label} ({mapping.idempotency_marker(key)})"[:250],
            "lines": [("create", lines)],
            "taxes": [("create", taxes)] if taxes else [],
        }

    async def _tax_lines(
        self,
        entity: TrytonLegalEntity,
        postings: Sequence[mapping.TaxPosting],
        label: str,
        *,
        credit: bool,
        total: Money,
        tax: Money,
    ) -> list[dict[str, Any]]:
        """Manual invoice tax lines carrying billing's amounts (negated on a credit note).

        Billing's tax of each rate must be the ERP tax's rate of its base, to half a cent per line
        (billing's own rounding); anything further off is refused before any draft exists.
        """
        sign = Decimal(-1) if credit else Decimal(1)
        out: list[dict[str, Any]] = []
        records = []
        for posting in postings:
            tax_id = entity.taxes.get(posting.code) if posting.code else entity.sales_tax
            if tax_id is None:
                what = f"tax rate {posting.code!r}" if posting.code else "tax without a rate"
                raise MappingError(
                    f"{label}: {what} ({posting.amount} on {posting.base}) has no ERP tax in "
                    f"company {entity.company}; map the code under the legal entity's taxes",
                    system=SYSTEM,
                )
            records.append((posting, tax_id, await self._tax_record(tax_id, entity, label)))
        if not all(p.plausible(Decimal(r["rate"] or 0)) for p, _, r in records):
            computed = sum(
                (p.per_line(Decimal(r["rate"] or 0), total.currency) for p, _, r in records),
                Decimal(0),
            )
            subtotal = total.amount - tax.amount
            raise DataError(
                f"{label}: the ERP computes total {subtotal + computed} (tax {computed}) "
                f"{total.currency} but billing's total is {total} (tax {tax}); not posted",
                system=SYSTEM,
            )
        for posting, tax_id, record in records:
            out.append(
                {
                    "manual": True,
                    "tax": tax_id,
                    "description": record["description"] or record["name"],
                    "legal_notice": record["legal_notice"],
                    "account": int(record["credit_note_account" if credit else "invoice_account"]),
                    "base": sign * posting.base,
                    "amount": sign * posting.amount,
                }
            )
        return out

    async def _tax_record(
        self, tax_id: int, entity: TrytonLegalEntity, label: str
    ) -> dict[str, Any]:
        if tax_id not in self._taxes:
            erp = await self._erp()
            rows = await erp.model("account.tax").read(
                [tax_id],
                [
                    "name",
                    "description",
                    "legal_notice",
                    "rate",
                    "invoice_account",
                    "credit_note_account",
                ],
                context=await self._context(entity),
            )
            if not rows or not rows[0]["invoice_account"] or not rows[0]["credit_note_account"]:
                raise MappingError(
                    f"{label}: ERP tax {tax_id} does not exist or has no invoice and credit "
                    "note accounts",
                    system=SYSTEM,
                )
            self._taxes[tax_id] = rows[0]
        return self._taxes[tax_id]

    async def _post_checked(
        self,
        invoice_id: int,
        entity: TrytonLegalEntity,
        label: str,
        *,
        expected_total: Money,
        expected_tax: Money,
    ) -> PostedInvoice:
        """Post only if Tryton's total and tax equal the canonical ones; else delete the draft."""
        erp = await self._erp()
        ctx = await self._context(entity)
        invoices = erp.model("account.invoice")
        [row] = await invoices.read([invoice_id], list(INVOICE_FIELDS), context=ctx)
        total = Decimal(row["total_amount"])
        tax = Decimal(row["tax_amount"])
        if total != expected_total.amount or tax != expected_tax.amount:
            with about(label):
                await invoices.delete([invoice_id], context=ctx)
            raise DataError(
                f"{label}: the ERP computes total {total} (tax {tax}) "
                f"{expected_total.currency} but billing's total is {expected_total} (tax "
                f"{expected_tax}); not posted, the draft was deleted",
                system=SYSTEM,
            )
        await self._acknowledge_expected(erp, [invoice_id])
        # Tryton deletes a warning's acknowledgement when it is used, so two postings that
        # acknowledge the same warning at once would race: post one at a time per connector.
        async with self._exclusive("post"):
            try:
                with about(label):
                    await invoices.execute_button(
                        "post", [invoice_id], context=ctx, allow_warnings=POSTING_WARNINGS
                    )
            except ConflictError:
                # An earlier attempt's post, sent before its process was killed, may finish in
                # Tryton while this one runs: the document is then posted, which is the goal.
                [now] = await invoices.read([invoice_id], list(INVOICE_FIELDS), context=ctx)
                if now["state"] not in ("posted", "paid"):
                    raise
                return posted_invoice(now)
        [posted] = await invoices.read([invoice_id], list(INVOICE_FIELDS), context=ctx)
        return posted_invoice(posted)

    async def invoice_status(self, erp_invoice_id: str) -> InvoiceStatusReport:
        """``amount_paid`` is the total minus what is still owed (payments and applied credits)."""
        row = await self._read_invoice(erp_invoice_id)
        currency = str(row["currency."]["code"])
        total = Money(Decimal(row["total_amount"]), currency)
        status = mapping.invoice_status(str(row["state"]))
        if status is InvoiceStatus.DRAFT:
            due = total
        elif status is InvoiceStatus.VOID:
            due = Money.zero(currency)
        else:
            due = Money(Decimal(row["amount_to_pay"]), currency)
        paid = Money.zero(currency) if status is InvoiceStatus.VOID else total - due
        return InvoiceStatusReport(
            status=status,
            total=total,
            amount_paid=paid,
            amount_due=due,
            due_date=await self._due_date(row) if status is InvoiceStatus.OPEN else None,
        )

    async def _due_date(self, row: Mapping[str, Any]) -> dt.date | None:
        """The earliest maturity among the receivable lines still open."""
        if not row.get("lines_to_pay"):
            return None
        erp = await self._erp()
        lines = await erp.model("account.move.line").read(
            list(row["lines_to_pay"]), ["maturity_date", "reconciliation"]
        )
        dates = [
            line["maturity_date"]
            for line in lines
            if line.get("maturity_date") and not line.get("reconciliation")
        ]
        return min(dates) if dates else None

    async def _read_invoice(self, erp_invoice_id: str, extra: Sequence[str] = ()) -> dict[str, Any]:
        invoice_id = self._known_id(erp_invoice_id, "invoice")
        erp = await self._erp()
        rows = await erp.model("account.invoice").search_read(
            [("id", "=", invoice_id), ("type", "=", "out")],
            [*INVOICE_FIELDS, "invoice_address", "account", "journal", *extra],
            limit=1,
        )
        if not rows:
            raise DataError(
                f"the ERP has no customer invoice with id {erp_invoice_id!r}", system=SYSTEM
            )
        return rows[0]


def posted_invoice(row: Mapping[str, Any]) -> PostedInvoice:
    currency = str(row["currency."]["code"])
    return PostedInvoice(
        erp_id=str(row["id"]),
        number=str(row.get("number") or ""),
        total=Money(Decimal(row["total_amount"]), currency),
        status=mapping.invoice_status(str(row["state"])),
    )
