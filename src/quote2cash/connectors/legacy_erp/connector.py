"""The ERP role on the legacy ERP: masters and orders over SOAP, receivables through batch files.

Guarantees (see ``connectors.roles.Erp``):
- effectively once: every document carries the hub's reference (billing's number, else the
  customer's global id, else the step's key); before creating anything the connector looks the
  reference up (``FindDocument``), and a file for it still waiting in ``in/`` is waited for,
  never written twice; the ERP itself answers a reference seen before with the same document;
- a file the batch has not answered within ``ack_wait_seconds`` is a ``TransientError``: the
  engine retries later and finds the document by its reference;
- refunds converge: ``reverse_payment`` reverses only what billing's cumulative refund of that
  payment adds to the reversals the ERP already holds for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

from quote2cash.canonical import (
    CreditMemo,
    Customer,
    Invoice,
    Money,
    Order,
    Payment,
    PaymentStatus,
    Product,
    Record,
    Ref,
)
from quote2cash.connectors.closing import ClosesOnExit
from quote2cash.connectors.item_codes import item_codes
from quote2cash.connectors.legacy_erp import mapping
from quote2cash.connectors.legacy_erp.client import SYSTEM, LegacyErpClient, LegacyFault
from quote2cash.connectors.legacy_erp.config import LegacyErpConfig, LegacyErpEntity
from quote2cash.connectors.legacy_erp.files import DropFolder
from quote2cash.connectors.roles import (
    InvoicePosting,
    InvoicePostingResult,
    InvoiceStatusReport,
    LedgerEntry,
    LedgerKind,
    Page,
    PostedInvoice,
    SystemCheck,
)
from quote2cash.engine.errors import (
    AuthError,
    DataError,
    IntegrationError,
    MappingError,
    TransientError,
)

__all__ = ["LegacyErp"]

INVOICE, PAYMENT, REVERSAL = "invoice", "payment", "reversal"
CREDIT_NOTE, CUSTOMER_CREDIT, APPLICATION = "credit_note", "customer_credit", "credit_application"
_LISTINGS: Final = {
    LedgerKind.CUSTOMER: ("ListCustomers", mapping.ledger_customer),
    LedgerKind.CONTRACT: ("ListOrders", mapping.ledger_order),
    LedgerKind.INVOICE: ("ListInvoices", mapping.ledger_invoice),
    LedgerKind.PAYMENT: ("ListPayments", mapping.ledger_payment),
}


def _reference(record: Record, key: str) -> str:
    """The hub's reference of a document: the business number, else an id, else the key."""
    number = getattr(record, "number", None)
    return str(number or record.id_in("billing") or record.global_id or key)


class LegacyErp(ClosesOnExit):
    """``connectors.roles.Erp`` and ``Ledger`` over the legacy ERP's SOAP service and drop folder.

    Build it with ``LegacyErp(LegacyErpConfig.for_sandbox(...))`` and use it as ``async with``.
    """

    system = SYSTEM

    def __init__(self, config: LegacyErpConfig) -> None:
        self.config = config
        self._client = LegacyErpClient(config)
        self._files = DropFolder(config.drop_folder)
        self._item_master: set[str] = set()

    def __repr__(self) -> str:
        return f"LegacyErp({self.config.base_url!r}, drop_folder={str(self.config.drop_folder)!r})"

    async def close(self) -> None:
        await self._client.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _entity(self, code: str, label: str) -> LegacyErpEntity:
        entity = self.config.legal_entities.get(code)
        if entity is None:
            known = ", ".join(sorted(self.config.legal_entities))
            raise MappingError(
                f"{label}: legal entity {code!r} is not booked in the legacy ERP "
                f"(configured: {known})",
                system=SYSTEM,
            )
        return entity

    async def _soap(self, label: str, operation: str, *args: Any) -> Any:
        try:
            return await self._client.call(operation, *args)
        except LegacyFault as fault:
            raise mapping.fault_error(label, fault.code, fault.message) from None

    async def _through_file(
        self, record_type: str, reference: str, rows: list[dict[str, str]], label: str
    ) -> str:
        """The document of ``reference``: found, else its waiting file's answer, else a new
        file's; an answer still missing after ``ack_wait_seconds`` is a ``TransientError``."""
        found = await self._soap(label, "FindDocument", record_type, reference)
        if found:
            return str(found)
        try:
            name = self._files.waiting(record_type, reference)
            if name is None:
                name = self._files.drop(record_type, reference, rows)
            answer = await self._files.wait(
                name,
                reference,
                seconds=self.config.ack_wait_seconds,
                poll=self.config.ack_poll_seconds,
            )
        except OSError as exc:
            raise TransientError(
                f"{label}: the legacy ERP's drop folder is not usable ({exc.strerror})",
                system=SYSTEM,
            ) from None
        if answer is None:
            raise TransientError(
                f"{label}: waiting for the legacy ERP's batch to process {name}", system=SYSTEM
            )
        if answer.document:
            return answer.document
        raise mapping.fault_error(label, answer.code or "Server", answer.message or "")

    def _customer_of(self, customer: Ref, label: str) -> str:
        number = customer.id_in("erp")
        if not number:
            raise MappingError(
                f"{label}: customer {customer.global_id} has no legacy ERP number "
                "(external_ids['erp']); onboard the customer first",
                system=SYSTEM,
            )
        return number

    async def _item_codes(self, refs: Sequence[Ref | None], label: str) -> list[str | None]:
        """The ERP item of each line's product (``item_codes``: erp, item_code, sku, ...,
        then its global id); a product none of whose codes is an ERP item is a MappingError."""
        found: list[str | None] = []
        for index, ref in enumerate(refs):
            if ref is None:
                found.append(None)
                continue
            codes = item_codes(ref)
            if not any(code in self._item_master for code in codes):
                self._item_master = {str(p.sku) for p in await self.list_items()}
            code = next((c for c in codes if c in self._item_master), None)
            if code is None:
                raise MappingError(
                    f"{label}: lines[{index}] product {' / '.join(codes)!r} is not in the "
                    "legacy ERP's item master",
                    system=SYSTEM,
                )
            found.append(code)
        return found

    async def _document(self, number: str, label: str) -> dict[str, Any]:
        row: dict[str, Any] = await self._soap(label, "InvoiceStatus", number)
        return row

    # --- customers and items ----------------------------------------------------------------

    async def upsert_customer(
        self, customer: Customer, *, legal_entity: str, idempotency_key: str
    ) -> str:
        """The customer's ERP number, upserted by its global id (else the step's key)."""
        label = customer.label or "Customer"
        entity = self._entity(legal_entity, label)
        reference = customer.global_id or f"key:{idempotency_key}"
        record = mapping.customer_record(customer, reference=reference, entity=entity.code)
        return str(await self._soap(label, "UpsertCustomer", record))

    async def get_customer(self, erp_customer_id: str) -> Customer:
        label = f"customer {erp_customer_id!r}"
        try:
            row = await self._client.call("GetCustomer", erp_customer_id)
        except LegacyFault as fault:
            if fault.code == "Client.UnknownCustomer":
                raise DataError(
                    f"{label} does not exist in the legacy ERP", system=SYSTEM
                ) from None
            raise mapping.fault_error(label, fault.code, fault.message) from None
        entity = self.config.legal_entities.get(str(row.get("entity") or ""))
        return mapping.customer_from(row, entity.currency if entity else None)

    async def list_items(self) -> list[Product]:
        items: list[Product] = []
        size = self.config.page_size
        while True:
            rows = await self._soap("item master", "ListItems", len(items), size) or []
            items.extend(mapping.item_from(row) for row in rows)
            if len(rows) < size:
                return items

    # --- orders and invoices -----------------------------------------------------------------

    async def book_order(self, order: Order, *, legal_entity: str, idempotency_key: str) -> str:
        label = order.label or "Order"
        entity = self._entity(legal_entity, label)
        customer = self._customer_of(order.customer, label)
        items = await self._item_codes([line.product for line in order.lines], label)
        record = mapping.order_record(
            order,
            reference=_reference(order, idempotency_key),
            entity=entity.code,
            customer=customer,
            items=[code or "" for code in items],
        )
        return str(await self._soap(label, "CreateSalesOrder", record))

    async def post_invoice(
        self, invoice: Invoice, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        label = invoice.label or "Invoice"
        entity = self._entity(legal_entity, label)
        if not invoice.lines:
            raise DataError(f"{label}: an invoice without lines cannot be posted", system=SYSTEM)
        customer = self._customer_of(invoice.customer, label)
        items = await self._item_codes([line.product for line in invoice.lines], label)
        rows = mapping.invoice_rows(invoice, entity=entity.code, customer=customer, items=items)
        number = await self._through_file(
            INVOICE, _reference(invoice, idempotency_key), rows, label
        )
        return mapping.posted(await self._document(number, label))

    async def post_invoices(self, postings: Sequence[InvoicePosting]) -> list[InvoicePostingResult]:
        """The invoices not yet known (``FindDocument``) and not waiting in a file of their own
        go into ONE drop file, answered per reference by the batch; each item's refusal or
        missing answer is its own ``error``. A reference twice in the batch is posted once."""
        results: dict[str, InvoicePostingResult] = {}
        references: list[str] = []
        numbers: dict[str, str] = {}  # reference -> document number
        waits: dict[str, tuple[str, str]] = {}  # reference -> (file name, label)
        new: list[tuple[str, list[dict[str, str]]]] = []
        for posting in postings:
            invoice = posting.invoice
            reference = _reference(invoice, posting.idempotency_key)
            references.append(reference)
            if reference in results or reference in numbers or reference in waits:
                continue
            label = invoice.label or "Invoice"
            try:
                entity = self._entity(posting.legal_entity, label)
                if not invoice.lines:
                    raise DataError(
                        f"{label}: an invoice without lines cannot be posted", system=SYSTEM
                    )
                customer = self._customer_of(invoice.customer, label)
                items = await self._item_codes([line.product for line in invoice.lines], label)
                rows = mapping.invoice_rows(
                    invoice, entity=entity.code, customer=customer, items=items
                )
                found = await self._soap(label, "FindDocument", INVOICE, reference)
            except IntegrationError as exc:
                results[reference] = InvoicePostingResult(error=exc)
                continue
            if found:
                numbers[reference] = str(found)
                continue
            name = self._files.waiting(INVOICE, reference)
            if name is None:
                new.append((reference, rows))
                waits[reference] = ("", label)
            else:
                waits[reference] = (name, label)
        try:
            if new:
                name = self._files.drop_many(INVOICE, new)
                for reference, _ in new:
                    waits[reference] = (name, waits[reference][1])
            await self._wait_answers(waits, numbers, results)
        except OSError as exc:
            for reference, (_, label) in waits.items():
                results.setdefault(
                    reference,
                    InvoicePostingResult(
                        error=TransientError(
                            f"{label}: the legacy ERP's drop folder is not usable ({exc.strerror})",
                            system=SYSTEM,
                        )
                    ),
                )
        for reference, number in numbers.items():
            try:
                document = await self._document(number, f"invoice {reference}")
                results[reference] = InvoicePostingResult(posted=mapping.posted(document))
            except IntegrationError as exc:
                results[reference] = InvoicePostingResult(error=exc)
        return [results[reference] for reference in references]

    async def _wait_answers(
        self,
        waits: dict[str, tuple[str, str]],
        numbers: dict[str, str],
        results: dict[str, InvoicePostingResult],
    ) -> None:
        """Poll the files of ``waits`` until each reference is answered or the wait is over."""
        pending = dict(waits)
        deadline = time.monotonic() + self.config.ack_wait_seconds
        while pending:
            for reference, (name, label) in list(pending.items()):
                answer = self._files.answer(name, reference)
                if answer is None:
                    continue
                del pending[reference]
                if answer.document:
                    numbers[reference] = answer.document
                else:
                    results[reference] = InvoicePostingResult(
                        error=mapping.fault_error(
                            label, answer.code or "Server", answer.message or ""
                        )
                    )
            if not pending or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.config.ack_poll_seconds)
        for reference, (name, label) in pending.items():
            results[reference] = InvoicePostingResult(
                error=TransientError(
                    f"{label}: waiting for the legacy ERP's batch to process {name}",
                    system=SYSTEM,
                )
            )

    async def invoice_status(self, erp_invoice_id: str) -> InvoiceStatusReport:
        return mapping.status_report(
            await self._document(erp_invoice_id, f"invoice {erp_invoice_id!r}")
        )

    # --- cash, refunds and credits -------------------------------------------------------------

    async def apply_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        label = payment.label or "Payment"
        if payment.status is not PaymentStatus.SUCCEEDED or payment.amount_refunded:
            raise DataError(
                f"{label}: a payment with status {payment.status.value!r} (refund "
                f"{payment.amount_refunded}) is not applied; refunds are booked by "
                "reverse_payment",
                system=SYSTEM,
            )
        reference = _reference(payment, idempotency_key)
        row = mapping.money_row(erp_invoice_id, payment.amount, payment.id_in("billing") or "")
        return await self._through_file(PAYMENT, reference, [row], label)

    async def reverse_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        label = payment.label or "Refund"
        billing = payment.id_in("billing")
        if not billing:
            raise DataError(
                f"{label}: a refund must name its billing payment in external_ids['billing']",
                system=SYSTEM,
            )
        refunded = payment.amount_refunded or Money.zero(payment.amount.currency)
        invoice = await self._document(erp_invoice_id, label)
        if refunded.currency != invoice["currency"]:
            raise DataError(
                f"{label}: refund in {refunded.currency} but invoice {erp_invoice_id} is in "
                f"{invoice['currency']}",
                system=SYSTEM,
            )
        held = [
            r
            for r in await self._soap(label, "ListReversals", erp_invoice_id) or []
            if r["payment_ref"] == billing
        ]
        reversed_so_far = sum((Decimal(r["amount"]) for r in held), Decimal(0))
        if refunded.amount <= reversed_so_far:
            if held:
                return str(held[-1]["number"])
            raise DataError(f"{label}: amount_refunded is zero: nothing to reverse", system=SYSTEM)
        delta = refunded - Money(reversed_so_far, refunded.currency)
        row = mapping.money_row(erp_invoice_id, delta, billing)
        return await self._through_file(REVERSAL, f"{billing}@{refunded.amount}", [row], label)

    async def issue_credit_note(
        self, memo: CreditMemo, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        label = memo.label or "Credit note"
        row = mapping.money_row(erp_invoice_id, memo.total, tax=memo.tax)
        return await self._through_file(
            CREDIT_NOTE, _reference(memo, idempotency_key), [row], label
        )

    async def post_customer_credit(
        self, memo: CreditMemo, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        label = memo.label or "Customer credit"
        entity = self._entity(legal_entity, label)
        row = {
            **mapping.money_row("", memo.total, tax=memo.tax),
            "entity": entity.code,
            "customer": self._customer_of(memo.customer, label),
        }
        number = await self._through_file(
            CUSTOMER_CREDIT, _reference(memo, idempotency_key), [row], label
        )
        return mapping.posted(await self._document(number, label))

    async def apply_customer_credit(
        self, erp_invoice_id: str, amount: Money, *, idempotency_key: str
    ) -> str:
        label = f"Credit of {amount} to invoice {erp_invoice_id}"
        row = mapping.money_row(erp_invoice_id, amount)
        return await self._through_file(APPLICATION, idempotency_key, [row], label)

    # --- reconciliation and health -------------------------------------------------------------

    async def ledger(
        self,
        kind: LedgerKind,
        *,
        since: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[LedgerEntry]:
        """Customers, booked orders, invoices (with credits) or payments, ``limit`` at a time
        (``cursor``: the offset); ``since`` keeps those created at or after it."""
        operation, convert = _LISTINGS[kind]
        offset = int(cursor) if cursor and cursor.isdigit() else 0
        stamp = since.isoformat() if since is not None else None
        rows = await self._soap(f"{kind.value} ledger", operation, offset, limit, stamp) or []
        entries = [convert(row) for row in rows]
        return Page(entries, str(offset + len(rows)) if len(rows) == limit else None)

    async def check(self) -> SystemCheck:
        """Call ``Ping``; reports failures instead of raising them."""
        started = time.monotonic()
        try:
            await self._client.call("Ping")
        except AuthError:
            elapsed = (time.monotonic() - started) * 1000
            return SystemCheck(SYSTEM, True, False, "the credentials were refused", elapsed)
        except (IntegrationError, LegacyFault) as exc:
            return SystemCheck(SYSTEM, False, False, str(exc))
        elapsed = (time.monotonic() - started) * 1000
        inbox = self.config.drop_folder / "in"
        detail = "SOAP and drop folder ready" if inbox.is_dir() else f"no drop folder at {inbox}"
        return SystemCheck(SYSTEM, True, True, detail, elapsed)
