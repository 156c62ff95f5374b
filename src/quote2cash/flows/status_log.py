"""GetInvoiceStatus computed the original way, by scanning the log: the reference answer the
read model (readmodels/invoice_status.py) must equal, kept for tests and checks. Its cost
grows with the log (``LIKE`` over every billing event's data); never serve from it.

GetInvoiceStatus: an invoice's last known status, amounts and ids in every system, answered
from the hub's own state (cross-references, the logged billing events and the steps the invoice
and payment flows recorded). It never calls an external system, so it answers while they are
down; ``as_of`` says how fresh the answer is.

Any id will do: the billing invoice id (``in_...``), the ERP invoice id, billing's invoice
number (the CRM's key for the invoice), the CRM's id of its invoice record, or the hub's
global id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from quote2cash.canonical import Money, Payment
from quote2cash.engine.errors import DataError
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.trail import (
    event_data_with_step_result,
    events_mentioning,
    has_step,
    latest_step_result,
    steps_of,
)
from quote2cash.flows.status import InvoiceStatusView
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.readmodels.invoice_status import crm_ids_of

_ERP_POSTING = ("erp.post_invoice", "erp.issue_credit_note", "erp.post_customer_credit")
_ERP_PAYMENT = "erp.apply_payment"
_CRM_PUBLISHING = (
    "crm.publish_invoice",
    "crm.publish_paid",
    "crm.publish_failed",
    "crm.publish_overdue",
    "crm.publish_refund",
)
_decoder = msgspec.json.Decoder()


def invoice_status_from_log(
    runtime: Runtime, xref: XrefStore, invoice_id: str
) -> InvoiceStatusView:
    """The invoice known by ``invoice_id`` in any system, computed by scanning the log (the
    reference the read model is checked against); DataError if the hub knows none."""
    ident = invoice_id.strip()
    billing_id = _billing_id(runtime, xref, ident)
    rows = _invoice_events(runtime, billing_id) if billing_id else []
    if billing_id is None or not rows:
        raise DataError(
            f"invoice {invoice_id!r}: the hub knows no invoice by that id (expected a billing "
            "invoice id in_..., an ERP invoice id, an invoice number, the CRM's invoice record id, "
            "or a global id INV-...)"
        )
    return _view(runtime, xref, billing_id, rows)


def _billing_id(runtime: Runtime, xref: XrefStore, ident: str) -> str | None:
    for system in ("billing", "erp"):
        gid = xref.global_id_for(Kind.INVOICE, system, ident)
        if gid is not None:
            return xref.local_id(gid, "billing")
    if ident.upper().startswith("INV-"):
        try:
            gid = xref.resolve(ident)
        except DataError:
            gid = None
        if gid is not None:
            return xref.local_id(gid, "billing")
    if _invoice_events(runtime, ident):
        return ident
    return _by_crm_id(runtime, ident)


def _invoice_events(runtime: Runtime, billing_id: str) -> list[tuple[int, str, datetime, Any]]:
    """(pos, subject, time, data) of the billing invoice and payment events about it."""
    out = []
    for logged in events_mentioning(runtime, ("billing.invoice.", "billing.payment."), billing_id):
        obj = logged.data.get("object") or {}
        if obj.get("object") == "invoice" and (
            obj.get("id") == billing_id or obj.get("number") == billing_id
        ):
            out.append((logged.pos, logged.subject, logged.time, logged.data))
    return out


def _by_crm_id(runtime: Runtime, crm_id: str) -> str | None:
    """The CRM's id of an invoice record, from what the CRM answered to the hub's publishing."""
    found = event_data_with_step_result(runtime, _CRM_PUBLISHING, crm_id)
    if found is None:
        return None
    obj = found.get("object") or {}
    return str(obj["id"]) if obj.get("id") else None


def _view(
    runtime: Runtime,
    xref: XrefStore,
    billing_id: str,
    rows: Sequence[tuple[int, str, datetime, Any]],
) -> InvoiceStatusView:
    billing_id = str((rows[-1][3].get("object") or {}).get("id") or billing_id)
    positions = [pos for pos, *_ in rows]
    recorded = steps_of(runtime, positions)
    names = {name for name, _ in recorded}
    crm_id = None
    for name, result in recorded:
        if name in _CRM_PUBLISHING:
            crm_id = crm_ids_of(_decoder.decode(result))[0] or crm_id
    gid = xref.global_id_for(Kind.INVOICE, "billing", billing_id)
    _, subject, as_of, data = rows[-1]
    obj: dict[str, Any] = data.get("object") or {}
    currency = str(obj.get("currency") or "").upper()
    transitions: dict[str, Any] = obj.get("status_transitions") or {}
    due = obj.get("due_date")
    paid = transitions.get("paid_at")
    amount_paid = Money.from_stripe_amount(int(obj.get("amount_paid") or 0), currency)
    refunded, reversed_in_erp = _refund(runtime, billing_id)
    return InvoiceStatusView(
        global_id=gid,
        billing_id=billing_id,
        erp_id=xref.local_id(gid, "erp") if gid else None,
        crm_id=crm_id,
        number=obj.get("number") or None,
        contract=subject.removeprefix("contract:") if subject.startswith("contract:") else None,
        status=str(obj.get("status") or "draft"),
        currency=currency,
        total=Money.from_stripe_amount(int(obj.get("total") or 0), currency),
        amount_paid=amount_paid,
        amount_due=Money.from_stripe_amount(int(obj.get("amount_remaining") or 0), currency),
        due_date=datetime.fromtimestamp(int(due), UTC).date() if due else None,
        paid_at=datetime.fromtimestamp(int(paid), UTC) if paid else None,
        posted_in_erp=bool(names.intersection(_ERP_POSTING)),
        payment_applied_in_erp=_ERP_PAYMENT in names,
        as_of=max(as_of, refunded[0]) if refunded else as_of,
        amount_refunded=refunded[1] if refunded else None,
        refund_reversed_in_erp=reversed_in_erp,
    )


def _refund(runtime: Runtime, billing_id: str) -> tuple[tuple[datetime, Money] | None, bool]:
    """The newest refund the refund flow read for this invoice: (when, cumulative amount), and
    whether the ERP reversal of that reading completed."""
    found = latest_step_result(
        runtime, "billing.payment.refunded", "billing.get_payment", billing_id
    )
    if found is None:
        return None, False
    reversed_in_erp = has_step(runtime, found.event_pos, "erp.reverse_payment")
    payment = Payment.model_validate(_decoder.decode(found.result))
    if payment.amount_refunded is None:
        return None, False
    return (found.event_time, payment.amount_refunded), reversed_in_erp
