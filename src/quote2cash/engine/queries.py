"""Read-only views of the engine's state for the CLI, the API and the console."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    STATE_COLUMNS,
    event_state,
    events,
    failures,
    parked_events,
    steps,
    subjects,
)


@dataclass(frozen=True)
class EventRow:
    pos: int
    id: str
    source: str
    type: str
    subject: str
    sequence: int
    status: str
    attempts: int
    correlation_id: str
    time: datetime
    category: str | None
    last_error: str | None
    parked_on: str | None = None
    park_reason: str | None = None
    park_deadline: datetime | None = None


def _row(r: Any) -> EventRow:
    return EventRow(
        r.pos,
        r.event_id,
        r.source,
        r.type,
        r.subject,
        r.sequence,
        r.status,
        r.attempts,
        r.correlation_id,
        r.time,
        r.category,
        r.last_error,
        getattr(r, "park_key", None),
        getattr(r, "reason", None),
        getattr(r, "deadline", None),
    )


def list_events(
    runtime: Runtime,
    *,
    status: str | None = None,
    subject: str | None = None,
    correlation_id: str | None = None,
    type_prefix: str | None = None,
    limit: int = 50,
    before: int | None = None,
    after: int | None = None,
) -> list[EventRow]:
    """Newest first, or with ``after`` oldest first from just after that position (reading the
    log forward); ``before`` continues a newest-first page. Paged by key (the position), so a
    page costs the same deep in a long log as at its head. A parked event carries the key it
    waits on, why, and its deadline."""
    q = (
        select(
            events,
            *STATE_COLUMNS,
            parked_events.c.park_key,
            parked_events.c.reason,
            parked_events.c.deadline,
        )
        .select_from(
            EVENTS_WITH_STATE.outerjoin(
                parked_events,
                (parked_events.c.event_pos == events.c.pos) & parked_events.c.expired.is_(False),
            )
        )
        .order_by(events.c.pos if after is not None else events.c.pos.desc())
        .limit(limit)
    )
    if after is not None:
        q = q.where(events.c.pos > after)
    if before is not None:
        q = q.where(events.c.pos < before)
    if status:
        q = q.where(event_state.c.status == status)
    if subject:
        q = q.where(events.c.subject == subject)
    if correlation_id:
        q = q.where(events.c.correlation_id == correlation_id)
    if type_prefix:
        q = q.where(events.c.type.startswith(type_prefix))
    with runtime.engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def failed_events(runtime: Runtime, kind: str | None = None, limit: int = 200) -> list[EventRow]:
    """The exception queue (permanent) and the dead-letter queue (retries exhausted)."""
    statuses = [kind] if kind else ["exception", "dead"]
    # A failed event holds its subject, so the (small, indexed) hold list finds it; a park past
    # its deadline holds nothing and is found by its expired park.
    held = select(subjects.c.held_by).where(subjects.c.held_by.is_not(None))
    expired = select(parked_events.c.event_pos).where(parked_events.c.expired.is_(True))
    q = (
        select(events, *STATE_COLUMNS)
        .select_from(EVENTS_WITH_STATE)
        .where(
            event_state.c.status.in_(statuses),
            events.c.pos.in_(held.union(expired).scalar_subquery()),
        )
        .order_by(events.c.pos)
        .limit(limit)
    )
    with runtime.engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


MAX_POSITION = 2**63 - 1


def is_position(ident: str) -> bool:
    """A log position: ASCII digits within the store's BIGINT (``²`` or 40 digits are ids)."""
    return ident.isascii() and ident.isdigit() and int(ident) <= MAX_POSITION


def find_event(runtime: Runtime, ident: str) -> dict[str, Any] | None:
    """An event by id (or log position), with its steps and failure history."""
    with runtime.engine.connect() as conn:
        q = select(events, *STATE_COLUMNS).select_from(EVENTS_WITH_STATE)
        if is_position(ident):
            q = q.where((events.c.event_id == ident) | (events.c.pos == int(ident)))
        else:
            q = q.where(events.c.event_id == ident)
        row = conn.execute(q.limit(1)).first()
        if row is None:
            return None
        step_rows = conn.execute(
            select(steps).where(steps.c.event_pos == row.pos).order_by(steps.c.completed_at)
        ).all()
        failure_rows = conn.execute(
            select(failures).where(failures.c.event_pos == row.pos).order_by(failures.c.id)
        ).all()
        return {
            "event": dict(row._mapping),
            "steps": [dict(s._mapping) for s in step_rows],
            "failures": [dict(f._mapping) for f in failure_rows],
        }


def status_counts(runtime: Runtime) -> dict[str, int]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(event_state.c.status, func.count()).group_by(event_state.c.status)
        )
        counts = {status: int(n) for status, n in rows}
        held = conn.execute(
            select(func.count()).where(subjects.c.held_by.is_not(None))
        ).scalar_one()
    counts["held_subjects"] = int(held)
    return counts


def latest_event_about(runtime: Runtime, event_type: str, object_id: str) -> EventRow | None:
    """The newest logged event of ``event_type`` whose data names ``object_id`` (in quotes)."""
    q = (
        select(events, *STATE_COLUMNS)
        .select_from(EVENTS_WITH_STATE)
        .where(events.c.type == event_type)
        .where(events.c.data.contains(f'"{object_id}"', autoescape=True))
        .order_by(events.c.pos.desc())
        .limit(1)
    )
    with runtime.engine.connect() as conn:
        row = conn.execute(q).first()
    return _row(row) if row is not None else None
