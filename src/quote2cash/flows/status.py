"""GetInvoiceStatus: an invoice's last known status, amounts and ids in every system, answered
from the hub's own state. It never calls an external system, so it answers while they are
down; ``as_of`` says how fresh the answer is.

Any id will do: the billing invoice id (``in_...``), the ERP invoice id, billing's invoice
number (the CRM's key for the invoice), the CRM's id of its invoice record, or the hub's
global id.

Guarantee: the answer is read from the read model (readmodels/invoice_status.py) and the
cross-references with a handful of primary-key or indexed lookups in one connection, whatever
the size of the log; it equals what a scan of the log says (flows/status_log.py, the reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from quote2cash.canonical import Money
from quote2cash.engine.errors import DataError
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.xref import XrefStore
from quote2cash.readmodels.invoice_status import StoredInvoice, find_invoice, warm_invoice_reads


@dataclass(frozen=True)
class InvoiceStatusView:
    """What the hub knows of one invoice; ``status`` is billing's (the system of record)."""

    global_id: str | None
    billing_id: str
    erp_id: str | None
    crm_id: str | None
    number: str | None
    contract: str | None
    status: str
    currency: str
    total: Money
    amount_paid: Money
    amount_due: Money
    due_date: date | None
    paid_at: datetime | None
    posted_in_erp: bool
    payment_applied_in_erp: bool
    as_of: datetime
    amount_refunded: Money | None = None
    """What billing has refunded of the invoice's payment (None: nothing)."""
    refund_reversed_in_erp: bool = False
    """Whether the ERP has reversed that refund on its invoice."""

    @property
    def is_credit(self) -> bool:
        return self.total.is_negative()


def get_invoice_status(runtime: Runtime, xref: XrefStore, invoice_id: str) -> InvoiceStatusView:
    """The invoice known by ``invoice_id`` in any system; DataError if the hub knows none.

    ``xref`` is the hub's cross-reference store, the same database as ``runtime``'s: its ids are
    read in the read model's one connection."""
    del xref
    found = find_invoice(runtime.engine, invoice_id.strip())
    if found is None:
        raise DataError(
            f"invoice {invoice_id!r}: the hub knows no invoice by that id (expected a billing "
            "invoice id in_..., an ERP invoice id, an invoice number, the CRM's invoice record id, "
            "or a global id INV-...)"
        )
    return _view(found)


def warm_invoice_status(runtime: Runtime, connections: int) -> None:
    """Ready the store connections ``get_invoice_status`` answers on, ``connections`` of them
    (a web process calls it before it listens)."""
    warm_invoice_reads(runtime.engine, connections)


def _view(r: StoredInvoice) -> InvoiceStatusView:
    currency = r.currency
    as_of = r.as_of
    refunded: Money | None = None
    if r.refund_amount is not None and r.refund_currency is not None:
        refunded = Money(Decimal(r.refund_amount), r.refund_currency)
        if r.refund_time is not None:
            as_of = max(as_of, r.refund_time)
    return InvoiceStatusView(
        global_id=r.global_id,
        billing_id=r.billing_id,
        erp_id=r.erp_id,
        crm_id=r.crm_id,
        number=r.number,
        contract=r.subject.removeprefix("contract:") if r.subject.startswith("contract:") else None,
        status=r.status,
        currency=currency,
        total=Money.from_stripe_amount(r.total, currency),
        amount_paid=Money.from_stripe_amount(r.amount_paid, currency),
        amount_due=Money.from_stripe_amount(r.amount_remaining, currency),
        due_date=datetime.fromtimestamp(r.due_date, UTC).date() if r.due_date else None,
        paid_at=datetime.fromtimestamp(r.paid_at, UTC) if r.paid_at else None,
        posted_in_erp=r.posted_in_erp,
        payment_applied_in_erp=r.payment_applied_in_erp,
        as_of=as_of,
        amount_refunded=refunded,
        refund_reversed_in_erp=r.refund_reversed,
    )
