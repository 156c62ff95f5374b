"""The business milestones as the hub's own store records them, read for the KPIs.

A milestone is an event's time (Closed Won, billing's invoice finalised) or a step's completion
(subscription created in billing, order booked and invoice posted in the ERP, invoice shown in
the CRM). Reads go by event type and time (``ix_events_type_time``), then by event position and
subject (primary and unique keys), never a scan of the log. Amounts stay Decimal.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec
from sqlalchemy import ColumnElement, Connection, func, select

from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    event_state,
    events,
    md_sync_state,
    md_xrefs,
    steps,
)

CLOSED_WON: Final = "crm.opportunity.closed_won"
ACTIVATED: Final = "billing.subscription.activated"
INVOICE_FINALIZED: Final = "billing.invoice.finalized"
PAYMENT_SUCCEEDED: Final = "billing.payment.succeeded"
AMENDMENT_REQUESTED: Final = "crm.amendment.requested"
CREATE_SUBSCRIPTION: Final = "billing.create_subscription"
BOOK_ORDER: Final = "erp.book_order"
GET_DEAL: Final = "crm.get_deal"
GET_INVOICE: Final = "billing.get_invoice"
POST_INVOICE: Final = "erp.post_invoice"
PUBLISH_INVOICE: Final = "crm.publish_invoice"
APPLY_PAYMENT: Final = "erp.apply_payment"
STEP_NAMES: Final = (
    CREATE_SUBSCRIPTION,
    BOOK_ORDER,
    GET_DEAL,
    GET_INVOICE,
    POST_INVOICE,
    PUBLISH_INVOICE,
    APPLY_PAYMENT,
)
"""The flows' step names the KPIs read (a test checks the flows still use them)."""
FAILED: Final = ("exception", "dead")
LEGAL_ENTITY: Final = "legal_entity"
UNKNOWN: Final = "unknown"
CHUNK: Final = 500
_ENTITY = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_decode = msgspec.json.Decoder()


@dataclass(frozen=True)
class Span:
    """One measured duration: from a milestone at ``at`` to a later one, ``seconds`` later."""

    entity: str
    stage: str
    at: datetime
    seconds: float


@dataclass(frozen=True)
class AmendmentRequest:
    entity: str
    at: datetime
    failed: bool


@dataclass(frozen=True)
class Amount:
    """Money moved: ``kind`` is bookings, billings or collections."""

    entity: str
    currency: str
    kind: str
    at: datetime
    amount: Decimal


@dataclass(frozen=True)
class Milestones:
    activation: list[Span]
    invoice_lag: list[Span]
    amendments: list[AmendmentRequest]
    amounts: list[Amount]


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _data(raw: str) -> dict[str, Any]:
    try:
        value = _decode.decode(raw)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _money(value: Any) -> tuple[Decimal, str] | None:
    """``{"amount": "12.30", "currency": "EUR"}`` as (Decimal, currency); None if not money."""
    if not isinstance(value, dict):
        return None
    currency = value.get("currency")
    try:
        amount = Decimal(str(value.get("amount")))
    except InvalidOperation:
        return None
    if not isinstance(currency, str) or not _CURRENCY.match(currency) or not amount.is_finite():
        return None
    return amount, currency


def _of_type(type_: str) -> ColumnElement[bool]:
    """A type filter that leaves the subject index in charge: given a few subjects, walking
    every event of one type (``ix_events_type_time``) would read far more rows."""
    return func.coalesce(events.c.type, "") == type_


def entity_label(value: str | None) -> str:
    return value if value is not None and _ENTITY.match(value) else UNKNOWN


# --- reads ------------------------------------------------------------------------------------


MilestoneRow = tuple[int, str, datetime, str, str, str]
"""(pos, subject, time, data, status, type) of an event a milestone starts from."""
MILESTONE_TYPES: Final = (CLOSED_WON, INVOICE_FINALIZED, PAYMENT_SUCCEEDED, AMENDMENT_REQUESTED)
FINISHED: Final = ("done", "resolved")
_ROW = (
    events.c.pos,
    events.c.subject,
    events.c.time,
    events.c.data,
    event_state.c.status,
    events.c.type,
)


@dataclass(frozen=True)
class AmendmentEvent:
    """One event of an amendment request (a request forwarded to its contract has two)."""

    request: str
    entity: str
    at: datetime
    failed: bool


@dataclass(frozen=True)
class Found:
    """What one starting event measured so far; ``settled`` when nothing can change any more
    (its events finished), so a reader may keep it instead of reading it again."""

    spans: tuple[Span, ...] = ()
    lags: tuple[Span, ...] = ()
    amounts: tuple[Amount, ...] = ()
    amendment: AmendmentEvent | None = None
    settled: bool = False


def events_of_type(
    conn: Connection, type_: str, since: datetime, until: datetime
) -> list[MilestoneRow]:
    """``type_`` events with ``since <= time < until`` (``ix_events_type_time``)."""
    rows = conn.execute(
        select(*_ROW)
        .select_from(EVENTS_WITH_STATE)
        .where(events.c.type == type_, events.c.time >= since, events.c.time < until)
        .order_by(events.c.time)
    )
    return [tuple(r) for r in rows]


def milestone_events_after(conn: Connection, after: int, upto: int) -> list[MilestoneRow]:
    """Milestone-starting events logged at positions ``after < pos <= upto`` (a primary-key
    range: only what is new since the last read)."""
    rows = conn.execute(
        select(*_ROW)
        .select_from(EVENTS_WITH_STATE)
        .where(events.c.pos > after, events.c.pos <= upto, events.c.type.in_(MILESTONE_TYPES))
    )
    return [tuple(r) for r in rows]


def events_at(conn: Connection, positions: Iterable[int]) -> list[MilestoneRow]:
    out: list[MilestoneRow] = []
    for part in chunks(sorted(set(positions))):
        rows = conn.execute(
            select(*_ROW).select_from(EVENTS_WITH_STATE).where(events.c.pos.in_(part))
        )
        out += [tuple(r) for r in rows]
    return out


def last_position(conn: Connection) -> int:
    return int(conn.execute(select(func.max(events.c.pos))).scalar() or 0)


def steps_of(
    conn: Connection, positions: Iterable[int], names: Sequence[str]
) -> dict[int, dict[str, tuple[datetime, str]]]:
    """Per event position: step name -> (completed at, result JSON), for ``names`` only."""
    out: dict[int, dict[str, tuple[datetime, str]]] = defaultdict(dict)
    for part in chunks(sorted(set(positions))):
        rows = conn.execute(
            select(steps.c.event_pos, steps.c.name, steps.c.completed_at, steps.c.result).where(
                steps.c.event_pos.in_(part), steps.c.name.in_(names)
            )
        )
        for r in rows:
            out[r.event_pos][r.name] = (r.completed_at, r.result)
    return out


def entities_of(conn: Connection, subject_names: Iterable[str]) -> dict[str, str]:
    """The legal entity decided at Closed Won for each contract subject (else ``unknown``):
    subject -> its Closed Won event's opportunity -> contract global id -> decision."""
    wanted = sorted(set(subject_names))
    opportunity_of: dict[str, str] = {}
    for part in chunks(wanted):
        rows = conn.execute(
            select(events.c.subject, events.c.data).where(
                events.c.subject.in_(part), _of_type(CLOSED_WON)
            )
        )
        for r in rows:
            opp = _data(r.data).get("opportunity_id")
            if opp:
                opportunity_of[r.subject] = str(opp)
    gid_of: dict[str, str] = {}
    for part in chunks(sorted(set(opportunity_of.values()))):
        rows = conn.execute(
            select(md_xrefs.c.local_id, md_xrefs.c.global_id).where(
                md_xrefs.c.kind == "subscription",
                md_xrefs.c.system == "crm",
                md_xrefs.c.local_id.in_(part),
                md_xrefs.c.valid_to.is_(None),
            )
        )
        gid_of.update({r.local_id: r.global_id for r in rows})
    entity_of_gid: dict[str, str] = {}
    for part in chunks(sorted(set(gid_of.values()))):
        rows = conn.execute(
            select(md_sync_state.c.global_id, md_sync_state.c.local_id).where(
                md_sync_state.c.system == LEGAL_ENTITY, md_sync_state.c.global_id.in_(part)
            )
        )
        entity_of_gid.update({r.global_id: r.local_id for r in rows})
    out = {}
    for subject in wanted:
        gid = gid_of.get(opportunity_of.get(subject, ""))
        out[subject] = entity_label(entity_of_gid.get(gid) if gid else None)
    return out


def measure(conn: Connection, rows: Sequence[MilestoneRow]) -> dict[int, Found]:
    """What each starting event measured: activation from a Closed Won (its billing step, its
    contract's ERP booking), invoice lag and billings from an invoice, collections from a
    payment, and each amendment event."""
    won = [r for r in rows if r[5] == CLOSED_WON]
    activations = _activations_of(conn, [r[1] for r in won])
    entity = entities_of(conn, {r[1] for r in rows})
    done = steps_of(
        conn, [r[0] for r in rows] + [pos for pos, _ in activations.values()], STEP_NAMES
    )
    out: dict[int, Found] = {}
    for pos, subject, at, data, status, type_ in rows:
        mine = done.get(pos, {})
        where = entity[subject]
        if type_ == CLOSED_WON:
            out[pos] = _activation(where, at, mine, activations.get(subject), done)
        elif type_ == INVOICE_FINALIZED:
            out[pos] = _invoice(where, at, mine, status)
        elif type_ == PAYMENT_SUCCEEDED:
            paid = (
                _money(_data(mine[GET_INVOICE][1]).get("amount_paid"))
                if (APPLY_PAYMENT in mine and GET_INVOICE in mine)
                else None
            )
            amounts = (Amount(where, paid[1], "collections", at, paid[0]),) if paid else ()
            out[pos] = Found(amounts=amounts, settled=status in FINISHED)
        elif type_ == AMENDMENT_REQUESTED:
            request = str(_data(data).get("request_id") or f"pos:{pos}")
            event = AmendmentEvent(request, where, at, status in FAILED)
            out[pos] = Found(amendment=event, settled=status in FINISHED)
    return out


def _activation(
    entity: str,
    at: datetime,
    mine: dict[str, tuple[datetime, str]],
    activation: tuple[int, str] | None,
    done: dict[int, dict[str, tuple[datetime, str]]],
) -> Found:
    spans: list[Span] = []
    amounts: list[Amount] = []
    if CREATE_SUBSCRIPTION in mine:
        spans.append(Span(entity, "billing", at, _seconds(at, mine[CREATE_SUBSCRIPTION][0])))
    booked = done.get(activation[0], {}) if activation else {}
    if BOOK_ORDER in booked:
        spans.append(Span(entity, "erp", at, _seconds(at, booked[BOOK_ORDER][0])))
        # the deal as Closed Won read it (an activation from before that was recorded read it)
        read = booked.get(GET_DEAL) or mine.get(GET_DEAL)
        total = _deal_total(_data(read[1])) if read else None
        if total is not None:
            amounts.append(Amount(entity, total[1], "bookings", at, total[0]))
    settled = CREATE_SUBSCRIPTION in mine and activation is not None and (activation[1] in FINISHED)
    return Found(spans=tuple(spans), amounts=tuple(amounts), settled=settled)


def _invoice(
    entity: str, at: datetime, mine: dict[str, tuple[datetime, str]], status: str
) -> Found:
    if POST_INVOICE not in mine:
        return Found(settled=status in FINISHED)
    lags = [Span(entity, "erp", at, _seconds(at, mine[POST_INVOICE][0]))]
    if PUBLISH_INVOICE in mine:
        lags.append(Span(entity, "crm", at, _seconds(at, mine[PUBLISH_INVOICE][0])))
    invoice = _data(mine[GET_INVOICE][1]) if GET_INVOICE in mine else {}
    total = _money(invoice.get("total"))
    amounts = (Amount(entity, total[1], "billings", at, total[0]),) if total else ()
    return Found(lags=tuple(lags), amounts=amounts, settled=status in FINISHED)


def combine(found: Iterable[Found]) -> Milestones:
    """The milestones of many starting events; amendment events grouped by request."""
    activation: list[Span] = []
    lag: list[Span] = []
    amounts: list[Amount] = []
    requests: dict[str, list[AmendmentEvent]] = defaultdict(list)
    for f in found:
        activation += f.spans
        lag += f.lags
        amounts += f.amounts
        if f.amendment is not None:
            requests[f.amendment.request].append(f.amendment)
    return Milestones(activation, lag, [_request(seen) for seen in requests.values()], amounts)


def _request(seen: list[AmendmentEvent]) -> AmendmentRequest:
    """One request, in its contract's entity, failed if any of its events failed."""
    known = [e.entity for e in seen if e.entity != UNKNOWN]
    return AmendmentRequest(
        known[0] if known else UNKNOWN, min(e.at for e in seen), any(e.failed for e in seen)
    )


def read_milestones(conn: Connection, since: datetime, until: datetime) -> Milestones:
    """Every milestone whose starting event happened in ``[since, until)``."""
    rows = [r for t in MILESTONE_TYPES for r in events_of_type(conn, t, since, until)]
    return combine(measure(conn, rows).values())


def _activations_of(conn: Connection, contract_subjects: list[str]) -> dict[str, tuple[int, str]]:
    """Each subject's first billing activation event: subject -> (pos, status)."""
    out: dict[str, tuple[int, str]] = {}
    for part in chunks(sorted(set(contract_subjects))):
        rows = conn.execute(
            select(events.c.subject, events.c.pos, event_state.c.status)
            .select_from(EVENTS_WITH_STATE)
            .where(events.c.subject.in_(part), _of_type(ACTIVATED))
            .order_by(events.c.pos)
        )
        for r in rows:
            out.setdefault(r.subject, (r.pos, r.status))
    return out


def _deal_total(deal: dict[str, Any]) -> tuple[Decimal, str] | None:
    """The deal's total: the sum of its lines' amounts, in its currency."""
    currency = deal.get("currency")
    total = Decimal(0)
    for line in deal.get("lines") or []:
        money = _money(line.get("amount") if isinstance(line, dict) else None)
        if money is None or money[1] != currency:
            return None
        total += money[0]
    return (total, currency) if isinstance(currency, str) else None
