"""The engine's work now and over a window, for the backlog gauges and the ops series: what
waits, on which system, since when; what was done and what failed.

Held and ready subjects are found by their partial indexes (``ix_subjects_held_by``,
``ix_subjects_ready``), their open events by subject, failures by time (``ix_failures_at``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, func, select

from quote2cash.observability.kpi_store import chunks
from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    event_state,
    events,
    failures,
    maintenance_windows,
    subjects,
    systems,
)

OPEN: Final = ("pending", "parked", "exception", "dead")


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
            .select_from(EVENTS_WITH_STATE)
            .where(event_state.c.subject.in_(part), event_state.c.status.in_(OPEN))
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
            .select_from(EVENTS_WITH_STATE)
            .join(failures, failures.c.event_pos == events.c.pos)
            .where(
                event_state.c.subject.in_(part),
                event_state.c.status.in_(OPEN),
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
        select(events.c.type, event_state.c.status, event_state.c.category)
        .select_from(subjects)
        .join(event_state, event_state.c.pos == subjects.c.held_by)
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
    columns = (
        events.c.pos,
        events.c.subject,
        events.c.recorded_at,
        event_state.c.processed_at,
        event_state.c.status,
    )
    recent = (
        select(*columns)
        .select_from(EVENTS_WITH_STATE)
        .where(events.c.time >= lookback, events.c.time < until)
    )
    rows: dict[int, Any] = {r.pos: r for r in conn.execute(recent)}
    for part in chunks(sorted(s for s, _, _, _ in with_work)):
        still_open = (
            select(*columns)
            .select_from(EVENTS_WITH_STATE)
            .where(event_state.c.subject.in_(part), event_state.c.status.in_(OPEN))
        )
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
