"""One deal's trace from the hub's own state: its events, steps, failures, parks, replay
requests and audit entries (all sharing its correlation id), in the order they happened."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, or_, select

from quote2cash.console.links import ObjectLinks
from quote2cash.console.views.xref_keys import global_ids_of
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    STATE_COLUMNS,
    audit_log,
    events,
    failures,
    md_xrefs,
    parked_events,
    replay_requests,
    steps,
)

LANES: Final = ("crm", "hub", "billing", "erp")
LANE_TITLES: Final = {"crm": "CRM", "hub": "Hub", "billing": "Billing", "erp": "ERP"}
MAX_EVENTS: Final = 2000
TOKEN: Final = re.compile(r'"([A-Za-z0-9][A-Za-z0-9_.:\-]{2,120})"')
SHOWN_RESULT: Final = 300


@dataclass(frozen=True)
class TraceItem:
    """One mark on the timeline: when, in which system's lane, what happened, its state."""

    at: datetime
    lane: str
    kind: str
    title: str
    detail: str = ""
    state: str = ""
    event_id: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class TraceEvent:
    """An event of the deal and where it stands (pending, done, exception, dead, replayed)."""

    pos: int
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    status: str
    replayed_by: str | None
    finance_sensitive: bool


@dataclass(frozen=True)
class LinkedObject:
    system: str
    kind: str
    local_id: str
    global_id: str
    url: str | None


@dataclass
class Trace:
    correlation_id: str
    subjects: list[str] = field(default_factory=list)
    events: list[TraceEvent] = field(default_factory=list)
    items: list[TraceItem] = field(default_factory=list)
    objects: list[LinkedObject] = field(default_factory=list)
    replay_ids: list[int] = field(default_factory=list)


def lane_of(system: str | None, name: str = "") -> str:
    """A system's lane; a name like ``billing.create_subscription`` names its own."""
    for candidate in (system or "", name.split(".", 1)[0]):
        if candidate in ("crm", "billing", "erp"):
            return candidate
    return "hub"


def _short(text: str, limit: int = SHOWN_RESULT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_trace(runtime: Runtime, correlation_id: str, links: ObjectLinks) -> Trace | None:
    """The deal's trace, or None when no event carries ``correlation_id``."""
    from quote2cash.engine.replay import is_finance_sensitive

    trace = Trace(correlation_id)
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(events, *STATE_COLUMNS)
            .select_from(EVENTS_WITH_STATE)
            .where(events.c.correlation_id == correlation_id)
            .order_by(events.c.pos)
            .limit(MAX_EVENTS)
        ).all()
        if not rows:
            return None
        positions = [r.pos for r in rows]
        replays_of = {r.causation_id: r.event_id for r in rows if r.source == "q2c.replay"}
        texts: list[str] = []
        for r in rows:
            replayed = replays_of.get(r.event_id)
            trace.events.append(
                TraceEvent(
                    r.pos,
                    r.event_id,
                    r.type,
                    r.source,
                    r.subject,
                    r.time,
                    r.status,
                    replayed,
                    is_finance_sensitive(r.type),
                )
            )
            state = f"{r.status}, replayed" if replayed else r.status
            if r.source == "q2c.replay":
                state = f"{r.status} (re-run of {r.causation_id})"
            trace.items.append(
                TraceItem(
                    r.recorded_at,
                    lane_of(r.type.split(".", 1)[0]),
                    "event",
                    r.type,
                    f"{r.event_id} from {r.source}; subject {r.subject} #{r.sequence}; "
                    f"event time {r.time:%Y-%m-%d %H:%M:%S}",
                    state,
                    r.event_id,
                )
            )
            texts.append(r.data)
            if r.subject not in trace.subjects:
                trace.subjects.append(r.subject)
        by_pos = {r.pos: r.event_id for r in rows}
        step_marks: dict[tuple[str | None, str], int] = {}
        for s in _in(conn, steps, steps.c.event_pos, positions, steps.c.completed_at):
            texts.append(s.result)
            step_marks[(by_pos.get(s.event_pos), s.name)] = len(trace.items)
            trace.items.append(
                TraceItem(
                    s.completed_at,
                    lane_of(s.system, s.name),
                    "step",
                    s.name,
                    _short(s.result),
                    "done",
                    by_pos.get(s.event_pos),
                )
            )
        for f in _in(conn, failures, failures.c.event_pos, positions, failures.c.at):
            retry = f"; retry at {f.retry_at:%H:%M:%S}" if f.retry_at else ""
            trace.items.append(
                TraceItem(
                    f.at,
                    lane_of(f.system),
                    "failure",
                    f"{f.kind} failure, attempt {f.attempt}",
                    f"{f.category or ''} {_short(f.error)}{retry}".strip(),
                    "retrying" if f.retry_at else f.kind,
                    by_pos.get(f.event_pos),
                )
            )
        for p in _in(conn, parked_events, parked_events.c.event_pos, positions, None):
            trace.items.append(
                TraceItem(
                    p.parked_at,
                    "hub",
                    "parked",
                    f"parked on {p.park_key}",
                    f"{p.reason}; deadline {p.deadline:%Y-%m-%d %H:%M}",
                    "expired" if p.expired else "waiting",
                    by_pos.get(p.event_pos),
                )
            )
        replay_entities = _replays(conn, trace, set(positions), correlation_id)
        audit_rows = conn.execute(
            select(audit_log)
            .where(
                or_(
                    audit_log.c.correlation_id == correlation_id,
                    audit_log.c.entity.in_(replay_entities),
                )
            )
            .order_by(audit_log.c.id)
        ).all()
        for a in audit_rows:
            if a.action == "step.completed":
                details = json.loads(a.details)
                at = step_marks.get((details.get("event_id"), details.get("step")))
                if at is not None:
                    step = trace.items[at]
                    trace.items[at] = replace(step, state=f"{step.state} · audit #{a.seq}")
                    continue
            trace.items.append(
                TraceItem(
                    a.at,
                    "hub",
                    "audit",
                    a.action,
                    f"by {a.actor} on {a.entity or '-'}: {_short(a.details, 200)}",
                    f"audit #{a.seq}",
                )
            )
        trace.objects = _objects(conn, texts, links)
    trace.items.sort(key=lambda item: (item.at, LANES.index(item.lane)))
    return trace


def _in(
    conn: Connection, table: Any, column: Any, positions: list[int], order: Any
) -> Iterable[Any]:
    query = select(table).where(column.in_(positions))
    if order is not None:
        query = query.order_by(order)
    return conn.execute(query).all()


def _replays(conn: Connection, trace: Trace, positions: set[int], correlation_id: str) -> list[str]:
    """Replay requests that pinned any of the deal's events, as timeline marks."""
    entities: list[str] = []
    for r in conn.execute(select(replay_requests).order_by(replay_requests.c.id)):
        selector = json.loads(r.selector)
        pinned = set(selector.get("positions") or [])
        if not (pinned & positions or selector.get("correlation_id") == correlation_id):
            continue
        trace.replay_ids.append(int(r.id))
        entities.append(f"replay:{r.id}")
        trace.items.append(
            TraceItem(
                r.requested_at,
                "hub",
                "replay",
                f"replay request {r.id}" + (" (finance-sensitive)" if r.finance_sensitive else ""),
                f"requested by {r.requested_by}: {r.reason}",
                r.status,
            )
        )
        if r.decided_at is not None:
            trace.items.append(
                TraceItem(
                    r.decided_at,
                    "hub",
                    "replay",
                    f"replay request {r.id} {r.status}",
                    f"by {r.decided_by}: {r.decision_note or ''}",
                    r.status,
                )
            )
    return entities


def _objects(conn: Connection, texts: list[str], links: ObjectLinks) -> list[LinkedObject]:
    """The objects in each system the deal touched, found through the cross-reference table
    from the ids its events and step results mention."""
    tokens = sorted({t for text in texts for t in TOKEN.findall(text)})[:2000]
    if not tokens:
        return []
    global_ids: set[str] = set()
    for start in range(0, len(tokens), 500):
        chunk = tokens[start : start + 500]
        global_ids.update(conn.execute(global_ids_of(conn, conn.engine, chunk)).scalars())
    if not global_ids:
        return []
    rows = conn.execute(
        select(md_xrefs)
        .where(md_xrefs.c.global_id.in_(sorted(global_ids)), md_xrefs.c.valid_to.is_(None))
        .order_by(md_xrefs.c.system, md_xrefs.c.kind, md_xrefs.c.local_id)
    ).all()
    return [
        LinkedObject(x.system, x.kind, x.local_id, x.global_id, links.url(x.system, x.local_id))
        for x in rows
    ]
