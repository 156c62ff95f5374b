"""Parking: an event that must wait for another one leaves its subject's queue until a key is
released, so it never blocks the events behind it.

A park and a release of the same key lock that key's row first (before any subject row), so
the two always serialize: a park committed after the release finds the key released and stays
pending; a release committed after the park un-parks it. Both are committed with the outcome
of the event that caused them (like the outbox), so a crash loses neither. Past its deadline a
parked event goes to the exception queue with its category and what it waited for since when.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from quote2cash.engine import parking_postgres, parking_sqlite
from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.errors import Category
from quote2cash.engine.events import Event
from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    event_state,
    events,
    failures,
    park_keys,
    parked_events,
    subjects,
)

EXPIRE_BATCH = 200
_BACKENDS: dict[str, ModuleType] = {"postgresql": parking_postgres, "sqlite": parking_sqlite}


class Parked(Exception):
    """Raised by ``HandlerContext.park``: the event waits for ``key``; not an attempt."""

    def __init__(
        self,
        key: str,
        reason: str,
        *,
        deadline: datetime,
        category: Category | str,
        released: bool = False,
    ) -> None:
        super().__init__(f"parked on {key}: {reason}")
        self.released = released
        """The key was already released when the handler parked (it read the release late)."""
        self.key = key
        self.reason = reason
        self.deadline = deadline
        self.category = Category(category)


@dataclass(frozen=True)
class Park:
    """One event to park, as the worker commits it."""

    event: Event
    key: str
    reason: str
    category: str
    deadline: datetime


@dataclass(frozen=True)
class Release:
    key: str
    event: Event


@dataclass
class ParkingOutcome:
    """What a commit's parks and releases did to subjects' pending counts."""

    left: Counter[str]
    """Per subject: events that left the queue (parked)."""
    returned: Counter[str]
    """Per subject: events put back in the queue (un-parked)."""
    parked: int = 0
    unparked: int = 0


def backend(conn: Connection) -> ModuleType:
    return _BACKENDS[conn.dialect.name]


def commit_parking(
    conn: Connection,
    parks: Sequence[Park],
    releases: Sequence[Release],
    now: datetime,
    audit: list[AuditEntry],
) -> ParkingOutcome:
    """Park and release inside the worker's commit; the keys must already be locked
    (``lock_keys``). A park on a key released before or in this commit stays pending."""
    out = ParkingOutcome(Counter(), Counter())
    released_keys = {r.key for r in releases}
    already = released_of(conn, {p.key for p in parks} - released_keys)
    for p in parks:
        assert p.event.pos is not None
        if p.key in released_keys or p.key in already:
            continue
        conn.execute(
            update(event_state).where(event_state.c.pos == p.event.pos).values(status="parked")
        )
        conn.execute(delete(parked_events).where(parked_events.c.event_pos == p.event.pos))
        conn.execute(
            insert(parked_events).values(
                event_pos=p.event.pos,
                subject=p.event.subject,
                park_key=p.key,
                reason=p.reason,
                category=p.category,
                parked_at=now,
                deadline=p.deadline,
                expired=False,
            )
        )
        out.left[p.event.subject] += 1
        out.parked += 1
        audit.append(
            AuditEntry(
                "engine",
                "event.parked",
                p.event.subject,
                correlation_id=p.event.correlation_id,
                details={
                    "event_id": p.event.id,
                    "type": p.event.type,
                    "key": p.key,
                    "reason": p.reason,
                    "deadline": p.deadline.isoformat(),
                },
            )
        )
    if releases:
        first: dict[str, Event] = {}
        for r in releases:
            first.setdefault(r.key, r.event)
        backend(conn).mark_released(conn, {k: e.id for k, e in first.items()}, now)
        freed = conn.execute(
            delete(parked_events)
            .where(
                parked_events.c.park_key.in_(sorted(first)),
                parked_events.c.expired.is_(False),
            )
            .returning(parked_events.c.event_pos, parked_events.c.subject, parked_events.c.park_key)
        ).all()
        per_key: Counter[str] = Counter()
        if freed:
            conn.execute(
                update(event_state)
                .where(
                    event_state.c.pos.in_([pos for pos, _, _ in freed]),
                    event_state.c.status == "parked",
                )
                .values(status="pending")
            )
            for _, subject, key in freed:
                out.returned[subject] += 1
                per_key[key] += 1
            out.unparked = len(freed)
        for key, by in first.items():
            audit.append(
                AuditEntry(
                    "engine",
                    "key.released",
                    by.subject,
                    correlation_id=by.correlation_id,
                    details={"key": key, "event_id": by.id, "unparked": per_key[key]},
                )
            )
    return out


def return_to_queues(conn: Connection, returned: Counter[str]) -> None:
    """Subjects of un-parked events have them pending again and are ready now."""
    for subject, n in sorted(returned.items()):
        conn.execute(
            update(subjects)
            .where(subjects.c.subject == subject)
            .values(pending=subjects.c.pending + n, ready_at=None)
        )


def released_of(conn: Connection, keys: Iterable[str]) -> set[str]:
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    rows = conn.execute(
        select(park_keys.c.key).where(
            park_keys.c.key.in_(wanted), park_keys.c.released_at.is_not(None)
        )
    )
    return {r[0] for r in rows}


def is_released(engine: Engine, key: str) -> bool:
    """Whether an event has released ``key`` (committed): what a handler may wait for."""
    with engine.connect() as conn:
        return bool(released_of(conn, [key]))


def expire_overdue(engine: Engine, now: datetime) -> int:
    """Parked events past their deadline go to the exception queue, with what they waited for."""
    with engine.connect() as conn:
        due = conn.execute(
            select(parked_events.c.event_pos)
            .where(parked_events.c.expired.is_(False), parked_events.c.deadline <= now)
            .order_by(parked_events.c.deadline)
            .limit(EXPIRE_BATCH)
        ).all()
    if not due:
        return 0
    with engine.begin() as conn:
        claimed = conn.execute(
            update(parked_events)
            .where(
                parked_events.c.event_pos.in_([r[0] for r in due]),
                parked_events.c.expired.is_(False),
            )
            .values(expired=True)
            .returning(*parked_events.c)
        ).all()
        audit: list[AuditEntry] = []
        for row in claimed:
            _expire(conn, row, now, audit)
        append_audit(conn, audit, now)
    return len(claimed)


def _expire(conn: Connection, row: Any, now: datetime, audit: list[AuditEntry]) -> None:
    ev = conn.execute(
        select(events.c.event_id, events.c.type, events.c.correlation_id, event_state.c.attempts)
        .select_from(EVENTS_WITH_STATE)
        .where(events.c.pos == row.event_pos)
    ).one()
    reason = (
        f"waited for {row.park_key} ({row.reason}) since {row.parked_at.isoformat()}; its deadline "
        f"{row.deadline.isoformat()} passed"
    )
    conn.execute(
        update(event_state)
        .where(event_state.c.pos == row.event_pos)
        .values(status="exception", category=row.category, last_error=reason)
    )
    conn.execute(
        insert(failures).values(
            event_pos=row.event_pos,
            attempt=ev.attempts + 1,
            kind="permanent",
            category=row.category,
            system=None,
            error=reason,
            retry_at=None,
            at=now,
        )
    )
    audit.append(
        AuditEntry(
            "engine",
            "event.exception",
            row.subject,
            correlation_id=ev.correlation_id,
            details={
                "event_id": ev.event_id,
                "type": ev.type,
                "category": row.category,
                "error": reason,
            },
        )
    )
