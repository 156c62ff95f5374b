"""The read model GetInvoiceStatus answers from: ``invoice_status`` (one row per billing invoice)
and ``invoice_keys`` (the ids the log names -> billing id).

Kept by :class:`InvoiceStatusProjection` in the transaction of the step record or the completion
that changes it (``Registry.add_projection``), so an answer never shows a step without its record
or the reverse. Every update is idempotent and ordered by log position, not by arrival: the row
takes an event's data only if it is newer than the data it holds, a refund only if its event is
newer than the refund it holds; so re-runs, replays and subjects committed in any order converge
on what a scan of the whole log would say (:func:`rebuild` is that scan, for an existing store).

Cross-references (ERP id, global id) are written by the flows in their own transactions, before
or after the step that follows them; they are not copied here but resolved at read time through
``md_xrefs``'s indexes, so the order of the two writes never matters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import Connection, Engine, and_, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from quote2cash.canonical import Payment
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import decode_data
from quote2cash.masterdata.xref import Kind, current_refs, lookup, resolve
from quote2cash.store.db import read_connection
from quote2cash.store.raw_reads import raw_reads
from quote2cash.store.schema import events, invoice_keys, invoice_status, steps
from quote2cash.store.types import UtcDateTime

if TYPE_CHECKING:
    from quote2cash.engine.events import Event

log = logging.getLogger("quote2cash.readmodels.invoice_status")

INVOICE_EVENT_PREFIXES = ("billing.invoice.", "billing.payment.")
ERP_POSTING = ("erp.post_invoice", "erp.issue_credit_note", "erp.post_customer_credit")
ERP_PAYMENT = "erp.apply_payment"
CRM_PUBLISHING = (
    "crm.publish_invoice",
    "crm.publish_paid",
    "crm.publish_failed",
    "crm.publish_overdue",
    "crm.publish_refund",
)
REFUND_EVENT = "billing.payment.refunded"
REFUND_READING = "billing.get_payment"
REFUND_REVERSAL = "erp.reverse_payment"
_STEPS_SEEN = (*ERP_POSTING, ERP_PAYMENT, *CRM_PUBLISHING, REFUND_READING, REFUND_REVERSAL)
_decoder = msgspec.json.Decoder()


class InvoiceStatusProjection:
    """The engine projection keeping ``invoice_status`` and ``invoice_keys`` in step."""

    def on_step(self, conn: Connection, event: Event, step: str, result: str) -> None:
        """Any step of an invoice event shows its data (a payment parked on its invoice's
        posting has read the invoice by then); some steps also change flags, ids or refunds."""
        if event.pos is None:
            return
        found = apply_events(conn, [(event.pos, event.type, event.subject, event.time, event.data)])
        if step in _STEPS_SEEN:
            apply_step(conn, found.get(event.pos), event.pos, event.type, event.time, step, result)

    def on_done(self, conn: Connection, events_done: Sequence[Event]) -> None:
        apply_events(
            conn,
            [(e.pos, e.type, e.subject, e.time, e.data) for e in events_done if e.pos is not None],
        )


LoggedEvent = tuple[int, str, str, datetime, dict[str, Any]]
"""(pos, type, subject, time, data) of a logged event."""


def invoice_of(event_type: str, data: dict[str, Any]) -> str | None:
    """The billing invoice id of a billing event whose object is that invoice, else None."""
    if not event_type.startswith(INVOICE_EVENT_PREFIXES):
        return None
    obj = data.get("object")
    if not isinstance(obj, dict) or obj.get("object") != "invoice" or not obj.get("id"):
        return None
    return str(obj["id"])


def _values(pos: int, subject: str, time: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The row an invoice event's data gives (ValueError/TypeError: amounts unreadable)."""
    obj: dict[str, Any] = data["object"]
    transitions = obj.get("status_transitions") or {}
    due, paid = obj.get("due_date"), transitions.get("paid_at")
    return {
        "billing_id": str(obj["id"]),
        "data_pos": pos,
        "subject": subject,
        "number": str(obj["number"]) if obj.get("number") else None,
        "status": str(obj.get("status") or "draft"),
        "currency": str(obj.get("currency") or "").upper(),
        "total": int(obj.get("total") or 0),
        "amount_paid": int(obj.get("amount_paid") or 0),
        "amount_remaining": int(obj.get("amount_remaining") or 0),
        "due_date": int(due) if due else None,
        "paid_at": int(paid) if paid else None,
        "as_of": time,
    }


def apply_events(conn: Connection, logged: Sequence[LoggedEvent]) -> dict[int, str]:
    """Take the invoice data of logged billing events, each row only from an event at least as
    new as the data it holds (the same event again brings its corrected data); their ids
    become keys. Returns pos -> billing id of the invoice events
    (an event whose amounts are unreadable is left out, and logged)."""
    newest: dict[str, dict[str, Any]] = {}
    keys: dict[str, str] = {}
    found: dict[int, str] = {}
    for pos, event_type, subject, time, data in logged:
        billing_id = invoice_of(event_type, data)
        if billing_id is None:
            continue
        try:
            values = _values(pos, subject, time, data)
        except (TypeError, ValueError, AttributeError):
            log.warning("billing event at %s: invoice %s has unreadable amounts", pos, billing_id)
            continue
        found[pos] = billing_id
        held = newest.get(billing_id)
        if held is None or held["data_pos"] <= pos:
            newest[billing_id] = values
        for key in (billing_id, values["number"]):
            if key:
                keys.setdefault(key, billing_id)
    if newest:
        # One lock order for every committer: by billing id.
        rows = [newest[b] for b in sorted(newest)]
        ins = _insert(conn, invoice_status)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[invoice_status.c.billing_id],
                set_={k: ins.excluded[k] for k in rows[0] if k != "billing_id"},
                where=or_(
                    invoice_status.c.data_pos.is_(None),
                    # the same event again: its data as corrected since (correct-and-retry)
                    invoice_status.c.data_pos <= ins.excluded.data_pos,
                ),
            ),
            rows,
        )
        _add_keys(conn, keys)
    return found


def apply_step(
    conn: Connection,
    billing_id: str | None,
    pos: int,
    event_type: str,
    time: datetime,
    step: str,
    result: str,
) -> None:
    """A step recorded on the event at ``pos`` (of invoice ``billing_id`` if it is an invoice
    event): what it changes of an invoice's row, if anything."""
    if event_type == REFUND_EVENT and step in (REFUND_READING, REFUND_REVERSAL):
        _refund_step(conn, pos, time, step, result)
    if billing_id is None:
        return
    changes: dict[str, Any] = {}
    if step in ERP_POSTING:
        changes["posted_in_erp"] = True
    elif step == ERP_PAYMENT:
        changes["payment_applied_in_erp"] = True
    elif step in CRM_PUBLISHING:
        crm_id, ids = crm_ids_of(_decode(result))
        if crm_id:
            changes["crm_id"] = crm_id
        _add_keys(conn, dict.fromkeys(ids, billing_id))
    if changes:
        conn.execute(
            update(invoice_status)
            .where(invoice_status.c.billing_id == billing_id)
            .values(**changes)
        )


def crm_ids_of(published: Any) -> tuple[str | None, list[str]]:
    """The CRM's id of the invoice record, and every id the CRM answered, from a recorded CRM
    publishing: ``{"crm_invoice_id": ..., "crm_deal_id": ...}``, or the list of ids steps
    recorded before the CRM role spoke business terms (the invoice record's first)."""
    if isinstance(published, dict):
        first = published.get("crm_invoice_id")
        values = [first, published.get("crm_deal_id")]
    elif isinstance(published, list):
        first = published[0] if published else None
        values = published
    else:
        return None, []
    ids = [str(v) for v in values if isinstance(v, str) and v]
    return (str(first) if isinstance(first, str) and first else None), ids


def _refund_step(conn: Connection, pos: int, time: datetime, step: str, result: str) -> None:
    if step == REFUND_REVERSAL:
        conn.execute(
            update(invoice_status)
            .where(invoice_status.c.refund_pos == pos)
            .values(refund_reversed=True)
        )
        return
    try:
        payment = Payment.model_validate(_decode(result))
    except ValueError:
        log.warning("refund event at %s: its payment reading is not a payment", pos)
        return
    billing_id = payment.invoice.id_in("billing") if payment.invoice else None
    if not billing_id:
        return
    refunded = payment.amount_refunded
    values: dict[str, Any] = {
        "billing_id": billing_id,
        "refund_pos": pos,
        "refund_time": time,
        "refund_amount": str(refunded.amount) if refunded is not None else None,
        "refund_currency": refunded.currency if refunded is not None else None,
        "refund_reversed": False,
    }
    stmt = _insert(conn, invoice_status).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[invoice_status.c.billing_id],
            set_={k: stmt.excluded[k] for k in values if k != "billing_id"},
            where=or_(
                invoice_status.c.refund_pos.is_(None),
                invoice_status.c.refund_pos < stmt.excluded.refund_pos,
            ),
        )
    )


def _add_keys(conn: Connection, keys: dict[str, str]) -> None:
    """The first invoice a key named keeps it (an id names one invoice)."""
    if keys:
        ins = _insert(conn, invoice_keys)
        conn.execute(
            ins.on_conflict_do_nothing(index_elements=[invoice_keys.c.key]),
            [{"key": k, "billing_id": b} for k, b in sorted(keys.items())],
        )


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _decode(raw: str) -> Any:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None


def rebuild(conn: Connection, *, batch: int = 5_000) -> int:
    """Rebuild the read model from the history already logged (an upgraded store answers as a
    scan of its log did): every billing invoice or payment event in log order, a page at a time,
    then the steps that matter in the order they completed. Returns how many events it read."""
    conn.execute(delete(invoice_keys))
    conn.execute(delete(invoice_status))
    type_filter = or_(
        *(and_(events.c.type >= p, events.c.type < p[:-1] + "/") for p in INVOICE_EVENT_PREFIXES)
    )
    count = 0
    invoice_at: dict[int, str] = {}
    query = select(events.c.pos, events.c.type, events.c.subject, events.c.time, events.c.data)
    last = 0
    while True:
        page = conn.execute(
            query.where(type_filter, events.c.pos > last).order_by(events.c.pos).limit(batch)
        ).all()
        if not page:
            break
        count += len(page)
        last = page[-1].pos
        invoice_at.update(
            apply_events(conn, [(p, t, s, tm, decode_data(raw)) for p, t, s, tm, raw in page])
        )
    recorded = conn.execute(
        select(
            events.c.pos,
            events.c.type,
            events.c.time,
            steps.c.name,
            steps.c.result,
            steps.c.completed_at,
        )
        .join(steps, steps.c.event_pos == events.c.pos)
        .where(type_filter, steps.c.name.in_(_STEPS_SEEN))
    ).all()
    # In the order they completed; a refund's reading before its reversal in the same instant.
    ordered = sorted(recorded, key=lambda r: (r.completed_at, r.pos, r.name != REFUND_READING))
    for pos, type_, time, name, result, _ in ordered:
        apply_step(conn, invoice_at.get(pos), pos, type_, time, name, result)
    return count


@dataclass(frozen=True)
class StoredInvoice:
    """One ``invoice_status`` row as stored (amounts in minor units, times as epoch seconds, as
    billing logged them), with the invoice's current global and ERP ids."""

    billing_id: str
    subject: str
    number: str | None
    status: str
    currency: str
    total: int
    amount_paid: int
    amount_remaining: int
    due_date: int | None
    paid_at: int | None
    as_of: datetime
    posted_in_erp: bool
    payment_applied_in_erp: bool
    crm_id: str | None
    refund_time: datetime | None
    refund_amount: str | None
    refund_currency: str | None
    refund_reversed: bool
    global_id: str | None
    erp_id: str | None


_WAYS = (
    "SELECT 0 AS rank, x.global_id, g.merged_into, NULL AS billing_id FROM md_xrefs x "
    "JOIN md_global_ids g ON g.global_id = x.global_id WHERE x.kind = :kind "
    "AND x.system = 'billing' AND x.local_id = :ident AND x.valid_to IS NULL "
    "UNION ALL SELECT 1, x.global_id, g.merged_into, NULL FROM md_xrefs x "
    "JOIN md_global_ids g ON g.global_id = x.global_id WHERE x.kind = :kind "
    "AND x.system = 'erp' AND x.local_id = :ident AND x.valid_to IS NULL "
    "UNION ALL SELECT 2, g.global_id, g.merged_into, NULL FROM md_global_ids g "
    "WHERE g.global_id = :global_ident "
    "UNION ALL SELECT 3, NULL, NULL, k.billing_id FROM invoice_keys k WHERE k.key = :ident"
)
"""Every way ``ident`` may name an invoice (each arm an indexed lookup); the lowest rank wins,
the order the log scan tried them in."""

_FIND = text(
    f"WITH ways AS ({_WAYS}), way AS (SELECT * FROM ways ORDER BY rank LIMIT 1) "
    "SELECT way.merged_into AS way_merged_into, s.*, gx.global_id AS gid, "
    "gg.merged_into AS gid_merged_into, "
    "(SELECT e.local_id FROM md_xrefs e WHERE e.global_id = gx.global_id AND e.system = 'erp' "
    "AND e.valid_to IS NULL ORDER BY e.valid_from, e.id LIMIT 1) AS erp_id "
    "FROM way LEFT JOIN invoice_status s ON s.data_pos IS NOT NULL AND s.billing_id = "
    "COALESCE(way.billing_id, (SELECT b.local_id FROM md_xrefs b WHERE b.global_id = "
    "way.global_id AND b.system = 'billing' AND b.valid_to IS NULL "
    "ORDER BY b.valid_from, b.id LIMIT 1)) "
    "LEFT JOIN md_xrefs gx ON gx.kind = :kind AND gx.system = 'billing' "
    "AND gx.local_id = s.billing_id AND gx.valid_to IS NULL "
    "LEFT JOIN md_global_ids gg ON gg.global_id = gx.global_id"
).columns(as_of=UtcDateTime(), refund_time=UtcDateTime())
"""The invoice row, its global id and ERP id, from whichever way named it: one round trip."""


def find_invoice(engine: Engine, ident: str) -> StoredInvoice | None:
    """The invoice ``ident`` names: billing then ERP cross-reference, a global id (``INV-...``),
    else an id the log named (billing id, invoice number, CRM id), in the order the log scan
    tried them. One statement of indexed lookups; a global id merged into another (rare for
    invoices) takes the exact path through ``md_xrefs``' merge chain instead. A read-only
    connection: on SQLite it never waits for a worker's write lock. The statement runs on the
    driver's connection (``store/raw_reads.py``): this read is answered many times a second."""
    row = raw_reads(engine).first(
        _FIND,
        {
            "kind": str(Kind.INVOICE),
            "ident": ident,
            # Only an INV-... id is tried as a global id (as the log scan did).
            "global_ident": ident if ident.upper().startswith("INV-") else None,
        },
    )
    if row is None:
        return None
    if row.way_merged_into is not None or row.gid_merged_into is not None:
        with read_connection(engine) as conn:
            return _find_exactly(conn, ident)
    if row.billing_id is None:
        return None
    return _stored(row, row.gid, row.erp_id)


def warm_invoice_reads(engine: Engine, connections: int) -> None:
    """Ready ``connections`` of ``find_invoice``'s kept connections, each having run its
    statement once (for an id no invoice has), before the first request needs them."""
    raw_reads(engine).warm(
        _FIND, {"kind": str(Kind.INVOICE), "ident": "", "global_ident": None}, connections
    )


def _find_exactly(conn: Connection, ident: str) -> StoredInvoice | None:
    """The same answer through ``masterdata.xref``'s own functions, merges followed."""
    billing_id = _billing_id(conn, ident)
    row = (
        conn.execute(
            select(invoice_status).where(
                invoice_status.c.billing_id == billing_id,
                invoice_status.c.data_pos.is_not(None),
            )
        ).first()
        if billing_id is not None
        else None
    )
    if row is None:
        return None
    gid = lookup(conn, Kind.INVOICE, "billing", row.billing_id)
    return _stored(row, gid, _local_id(conn, gid, "erp") if gid else None)


def _stored(row: Any, gid: str | None, erp_id: str | None) -> StoredInvoice:
    refunded = row.refund_pos is not None and row.refund_amount is not None
    return StoredInvoice(
        billing_id=str(row.billing_id),
        subject=str(row.subject),
        number=row.number,
        status=str(row.status),
        currency=str(row.currency),
        total=int(row.total),
        amount_paid=int(row.amount_paid),
        amount_remaining=int(row.amount_remaining),
        due_date=row.due_date,
        paid_at=row.paid_at,
        as_of=row.as_of,
        posted_in_erp=bool(row.posted_in_erp),
        payment_applied_in_erp=bool(row.payment_applied_in_erp),
        crm_id=row.crm_id,
        refund_time=row.refund_time if refunded else None,
        refund_amount=row.refund_amount if refunded else None,
        refund_currency=row.refund_currency if refunded else None,
        refund_reversed=bool(row.refund_reversed) if refunded else False,
        global_id=gid,
        erp_id=erp_id,
    )


def _billing_id(conn: Connection, ident: str) -> str | None:
    for system in ("billing", "erp"):
        gid = lookup(conn, Kind.INVOICE, system, ident)
        if gid is not None:
            return _local_id(conn, gid, "billing")
    if ident.upper().startswith("INV-"):
        try:
            gid = resolve(conn, ident)
        except DataError:
            gid = None
        if gid is not None:
            return _local_id(conn, gid, "billing")
    found = conn.execute(
        select(invoice_keys.c.billing_id).where(invoice_keys.c.key == ident)
    ).scalar_one_or_none()
    return None if found is None else str(found)


def _local_id(conn: Connection, global_id: str, system: str) -> str | None:
    """``XrefStore.local_id`` in this connection: the oldest current link in ``system``."""
    for ref in current_refs(conn, resolve(conn, global_id)):
        if ref.system == system:
            return ref.local_id
    return None
