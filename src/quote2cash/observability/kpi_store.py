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
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, and_, func, select

from quote2cash.store.schema import (
    events,
    failures,
    maintenance_windows,
    md_sync_state,
    md_xrefs,
    steps,
    subjects,
    systems,
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
OPEN: Final = ("pending", "parked", "exception", "dead")
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


@dataclass(frozen=True)
class OpenEvent:
    """An event not done yet (or done within the window): when logged, done, what it waits on."""

    recorded_at: datetime
    processed_at: datetime | None
    system: str


@dataclass(frozen=True)
class Backlog:
    system: str
    events: int
    oldest: datetime | None


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


def entity_label(value: str | None) -> str:
    return value if value is not None and _ENTITY.match(value) else UNKNOWN


# --- reads ------------------------------------------------------------------------------------


def events_of_type(
    conn: Connection, type_: str, since: datetime, until: datetime
) -> list[tuple[int, str, datetime, str, str]]:
    """(pos, subject, time, data, status) of ``type_`` events with ``since <= time < until``."""
    rows = conn.execute(
        select(events.c.pos, events.c.subject, events.c.time, events.c.data, events.c.status)
        .where(events.c.type == type_, events.c.time >= since, events.c.time < until)
        .order_by(events.c.time)
    )
    return [(r.pos, r.subject, r.time, r.data, r.status) for r in rows]


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
                events.c.subject.in_(part), events.c.type == CLOSED_WON
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


def read_milestones(conn: Connection, since: datetime, until: datetime) -> Milestones:
    """Every milestone whose starting event happened in ``[since, until)``."""
    activation: list[Span] = []
    lag: list[Span] = []
    amounts: list[Amount] = []
    won = events_of_type(conn, CLOSED_WON, since, until)
    invoices = events_of_type(conn, INVOICE_FINALIZED, since, until)
    payments = events_of_type(conn, PAYMENT_SUCCEEDED, since, until)
    requests = events_of_type(conn, AMENDMENT_REQUESTED, since, until)
    activations = _activations_of(conn, [subject for _, subject, *_ in won])
    entity = entities_of(
        conn, {r[1] for r in (*won, *invoices, *payments, *requests)} | set(activations)
    )
    done = steps_of(
        conn,
        [r[0] for r in (*won, *invoices, *payments)] + [pos for pos, _ in activations.values()],
        STEP_NAMES,
    )
    for pos, subject, at, _, _ in won:
        mine = done.get(pos, {})
        if CREATE_SUBSCRIPTION in mine:
            activation.append(
                Span(entity[subject], "billing", at, _seconds(at, mine[CREATE_SUBSCRIPTION][0]))
            )
        act_pos = activations.get(subject, (None, None))[0]
        booked = done.get(act_pos, {}) if act_pos is not None else {}
        if BOOK_ORDER in booked:
            activation.append(Span(entity[subject], "erp", at, _seconds(at, booked[BOOK_ORDER][0])))
            deal = _data(booked[GET_DEAL][1]) if GET_DEAL in booked else {}
            total = _deal_total(deal)
            if total is not None:
                amounts.append(Amount(entity[subject], total[1], "bookings", at, total[0]))
    for pos, subject, at, _, _ in invoices:
        mine = done.get(pos, {})
        if POST_INVOICE not in mine:
            continue
        lag.append(Span(entity[subject], "erp", at, _seconds(at, mine[POST_INVOICE][0])))
        if PUBLISH_INVOICE in mine:
            lag.append(Span(entity[subject], "crm", at, _seconds(at, mine[PUBLISH_INVOICE][0])))
        invoice = _data(mine[GET_INVOICE][1]) if GET_INVOICE in mine else {}
        total = _money(invoice.get("total"))
        if total is not None:
            amounts.append(Amount(entity[subject], total[1], "billings", at, total[0]))
    for pos, subject, at, _, _ in payments:
        mine = done.get(pos, {})
        if APPLY_PAYMENT not in mine or GET_INVOICE not in mine:
            continue
        paid = _money(_data(mine[GET_INVOICE][1]).get("amount_paid"))
        if paid is not None:
            amounts.append(Amount(entity[subject], paid[1], "collections", at, paid[0]))
    return Milestones(activation, lag, _amendments(requests, entity), amounts)


def _activations_of(conn: Connection, contract_subjects: list[str]) -> dict[str, tuple[int, str]]:
    """Each subject's first billing activation event: subject -> (pos, status)."""
    out: dict[str, tuple[int, str]] = {}
    for part in chunks(sorted(set(contract_subjects))):
        rows = conn.execute(
            select(events.c.subject, events.c.pos, events.c.status)
            .where(events.c.subject.in_(part), events.c.type == ACTIVATED)
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


def _amendments(
    rows: list[tuple[int, str, datetime, str, str]], entity: dict[str, str]
) -> list[AmendmentRequest]:
    """One per CRM request (a request forwarded to its contract is one request), failed if
    any of its events is an exception or dead-lettered."""
    by_request: dict[str, list[tuple[str, datetime, str]]] = defaultdict(list)
    for pos, subject, at, data, status in rows:
        request = str(_data(data).get("request_id") or f"pos:{pos}")
        by_request[request].append((subject, at, status))
    out = []
    for seen in by_request.values():
        known = [entity[s] for s, _, _ in seen if entity.get(s, UNKNOWN) != UNKNOWN]
        out.append(
            AmendmentRequest(
                known[0] if known else UNKNOWN,
                min(at for _, at, _ in seen),
                any(status in FAILED for _, _, status in seen),
            )
        )
    return out


# --- the engine's state now -------------------------------------------------------------------


def open_subjects(conn: Connection) -> list[tuple[str, int, str | None, datetime | None]]:
    """(subject, events waiting, waiting_on, oldest open event logged at) of subjects with
    work: ready or retrying ones (``ix_subjects_ready``) and held ones (``ix_subjects_held_by``,
    whose holding event is not in ``pending`` but waits all the same)."""
    ready = select(subjects.c.subject, subjects.c.pending, subjects.c.waiting_on).where(
        subjects.c.pending > 0, subjects.c.held_by.is_(None)
    )
    held = select(subjects.c.subject, subjects.c.pending + 1, subjects.c.waiting_on).where(
        subjects.c.held_by.is_not(None)
    )
    found = [(r[0], int(r[1]), r[2]) for q in (ready, held) for r in conn.execute(q)]
    oldest: dict[str, datetime] = {}
    for part in chunks(sorted({s for s, _, _ in found})):
        rows = conn.execute(
            select(events.c.subject, func.min(events.c.recorded_at))
            .where(events.c.subject.in_(part), events.c.status.in_(OPEN))
            .group_by(events.c.subject)
        )
        oldest.update({r[0]: r[1] for r in rows})
    return [(s, n, waiting, oldest.get(s)) for s, n, waiting in found]


def failure_systems(conn: Connection, subject_names: Sequence[str]) -> dict[str, str]:
    """Per subject: the system of the latest failure of its open events, if one named it."""
    out: dict[str, str] = {}
    for part in chunks(sorted(set(subject_names))):
        rows = conn.execute(
            select(events.c.subject, failures.c.system)
            .join(failures, failures.c.event_pos == events.c.pos)
            .where(
                events.c.subject.in_(part),
                events.c.status.in_(OPEN),
                failures.c.system.is_not(None),
            )
            .order_by(failures.c.id)
        )
        out.update({r.subject: r.system for r in rows})
    return out


def backlog_now(conn: Connection) -> list[Backlog]:
    """Work waiting per target system: a subject held for a system (pause, window, breaker)
    counts there, else the system its open event last failed on, else ``none``."""
    rows = open_subjects(conn)
    named = failure_systems(conn, [s for s, _, waiting, _ in rows if waiting is None])
    count: dict[str, int] = defaultdict(int)
    oldest: dict[str, datetime] = {}
    for subject, pending, waiting, first in rows:
        system = waiting or named.get(subject) or "none"
        count[system] += pending
        if first is not None and (system not in oldest or first < oldest[system]):
            oldest[system] = first
    return [Backlog(s, n, oldest.get(s)) for s, n in sorted(count.items())]


def held_events(conn: Connection) -> list[tuple[str, str, str | None]]:
    """(type, status, category) of each event holding its subject (exception or dead letter)."""
    rows = conn.execute(
        select(events.c.type, events.c.status, events.c.category)
        .select_from(subjects)
        .join(events, events.c.pos == subjects.c.held_by)
        .where(subjects.c.held_by.is_not(None))
    )
    return [(r.type, r.status, r.category) for r in rows]


def system_states(conn: Connection, now: datetime) -> dict[str, tuple[bool, bool]]:
    """Per system named in the store: (paused by hand, in a maintenance window now)."""
    out: dict[str, tuple[bool, bool]] = {}
    for r in conn.execute(select(systems.c.name, systems.c.paused)):
        out[r.name] = (bool(r.paused), False)
    windows = conn.execute(
        select(maintenance_windows.c.system).where(
            and_(maintenance_windows.c.starts_at <= now, maintenance_windows.c.ends_at > now)
        )
    )
    for r in windows:
        out[r.system] = (out.get(r.system, (False, False))[0], True)
    return out


def event_history(
    conn: Connection, since: datetime, until: datetime
) -> tuple[list[OpenEvent], list[tuple[datetime, str]]]:
    """Events logged from a day before ``since`` (and every event still open), and the failures
    recorded in ``[since, until)`` as (at, kind): enough to replay the backlog over the window."""
    with_work = open_subjects(conn)
    waiting = {s: w for s, _, w, _ in with_work if w}
    lookback = since - timedelta(days=1)
    recent = select(
        events.c.pos, events.c.subject, events.c.recorded_at, events.c.processed_at, events.c.status
    ).where(events.c.time >= lookback, events.c.time < until)
    rows: dict[int, Any] = {r.pos: r for r in conn.execute(recent)}
    for part in chunks(sorted(s for s, _, _, _ in with_work)):
        still_open = select(
            events.c.pos,
            events.c.subject,
            events.c.recorded_at,
            events.c.processed_at,
            events.c.status,
        ).where(events.c.subject.in_(part), events.c.status.in_(OPEN))
        rows.update({r.pos: r for r in conn.execute(still_open)})
    system_of: dict[int, str] = {}
    for part in chunks(sorted(rows)):
        for f in conn.execute(
            select(failures.c.event_pos, failures.c.system)
            .where(failures.c.event_pos.in_(part), failures.c.system.is_not(None))
            .order_by(failures.c.id)
        ):
            system_of[f.event_pos] = f.system
    history = []
    for pos, r in rows.items():
        open_now = r.status in OPEN
        system = system_of.get(pos) or (waiting.get(r.subject) if open_now else None) or "none"
        done_at = None if open_now else (r.processed_at or r.recorded_at)
        history.append(OpenEvent(r.recorded_at, done_at, system))
    failed = [
        (f.at, f.kind)
        for f in conn.execute(
            select(failures.c.at, failures.c.kind).where(
                failures.c.at >= since, failures.c.at < until
            )
        )
    ]
    return history, failed
