"""A micro-batcher in front of the ERP role: ``post_invoice`` calls that arrive together (the
worker runs many contracts' events at once) are posted as one ``Erp.post_invoices`` batch.

Guarantees: each caller gets exactly what ``post_invoice`` alone would give it (its receipt, or
its own error raised), so every flow step is still recorded separately, per item; a batch is
sent when ``max_batch`` postings wait or ``window`` seconds after the first, whichever is first;
the order of one contract's postings is kept because its events still run one after another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from quote2cash.canonical import CreditMemo, Customer, Invoice, Money, Order, Payment, Product
from quote2cash.connectors.roles import (
    Erp,
    InvoicePosting,
    InvoicePostingResult,
    InvoiceStatusReport,
    PostedInvoice,
    SystemCheck,
)
from quote2cash.engine.errors import IntegrationError, TransientError

__all__ = ["BatchingErp"]

_log = logging.getLogger(__name__)

_Waiting = tuple[InvoicePosting, "asyncio.Future[InvoicePostingResult]"]


class BatchingErp:
    """``Erp`` over ``inner``: invoice postings are gathered into batches; the rest passes."""

    def __init__(self, inner: Erp, *, max_batch: int = 8, window: float = 0.02) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.inner = inner
        self.system = inner.system
        self.max_batch = max_batch
        self.window = window
        self._waiting: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0
        """How many ``post_invoices`` calls were made (observability and tests)."""

    def __repr__(self) -> str:
        return f"BatchingErp({self.inner!r}, max_batch={self.max_batch})"

    def __getattr__(self, name: str) -> Any:
        # what the role does not name (close, ledger, ...) is the inner connector's
        return getattr(self.inner, name)

    async def post_invoice(
        self, invoice: Invoice, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        """Wait for this posting's batch; its receipt, or its own error raised."""
        if self.max_batch == 1:
            return await self.inner.post_invoice(
                invoice, legal_entity=legal_entity, idempotency_key=idempotency_key
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InvoicePostingResult] = loop.create_future()
        self._waiting.append((InvoicePosting(invoice, legal_entity, idempotency_key), future))
        if len(self._waiting) >= self.max_batch:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._send)
        result = await future
        if result.error is not None:
            raise result.error
        if result.posted is None:
            raise TransientError(
                f"{invoice.label or 'Invoice'}: the ERP batch gave no result", system=self.system
            )
        return result.posted

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._post(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, batch: list[_Waiting]) -> None:
        self.batches_sent += 1
        _log.info("erp invoice batch of %d posting(s)", len(batch))
        try:
            results = await self._post_all([posting for posting, _ in batch])
        except BaseException as exc:  # every waiter learns of it; none is left hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(result)

    async def _post_all(self, postings: list[InvoicePosting]) -> list[InvoicePostingResult]:
        """A batch of one takes ``post_invoice``'s own path (nothing gathered, nothing gained)."""
        if len(postings) > 1:
            return await self.inner.post_invoices(postings)
        [one] = postings
        try:
            posted = await self.inner.post_invoice(
                one.invoice, legal_entity=one.legal_entity, idempotency_key=one.idempotency_key
            )
        except IntegrationError as exc:
            return [InvoicePostingResult(error=exc)]
        return [InvoicePostingResult(posted=posted)]

    # --- the rest of the role, passed through --------------------------------------------------

    async def post_invoices(self, postings: Sequence[InvoicePosting]) -> list[InvoicePostingResult]:
        return await self.inner.post_invoices(postings)

    async def upsert_customer(
        self, customer: Customer, *, legal_entity: str, idempotency_key: str
    ) -> str:
        return await self.inner.upsert_customer(
            customer, legal_entity=legal_entity, idempotency_key=idempotency_key
        )

    async def get_customer(self, erp_customer_id: str) -> Customer:
        return await self.inner.get_customer(erp_customer_id)

    async def list_items(self) -> list[Product]:
        return await self.inner.list_items()

    async def book_order(self, order: Order, *, legal_entity: str, idempotency_key: str) -> str:
        return await self.inner.book_order(
            order, legal_entity=legal_entity, idempotency_key=idempotency_key
        )

    async def apply_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        return await self.inner.apply_payment(
            payment, erp_invoice_id=erp_invoice_id, idempotency_key=idempotency_key
        )

    async def reverse_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        return await self.inner.reverse_payment(
            payment, erp_invoice_id=erp_invoice_id, idempotency_key=idempotency_key
        )

    async def issue_credit_note(
        self, memo: CreditMemo, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        return await self.inner.issue_credit_note(
            memo, erp_invoice_id=erp_invoice_id, idempotency_key=idempotency_key
        )

    async def post_customer_credit(
        self, memo: CreditMemo, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        return await self.inner.post_customer_credit(
            memo, legal_entity=legal_entity, idempotency_key=idempotency_key
        )

    async def apply_customer_credit(
        self, erp_invoice_id: str, amount: Money, *, idempotency_key: str
    ) -> str:
        return await self.inner.apply_customer_credit(
            erp_invoice_id, amount, idempotency_key=idempotency_key
        )

    async def invoice_status(self, erp_invoice_id: str) -> InvoiceStatusReport:
        return await self.inner.invoice_status(erp_invoice_id)

    async def check(self) -> SystemCheck:
        return await self.inner.check()
