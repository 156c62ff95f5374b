"""Which events a run may take: processed (done), older than their class's cutoff, not of a type
kept forever, and only from the processed front of their subject.

The front rule: an event behind a pending, parked or failed event of its subject stays, so a
requeued event still finds its subject's history in order. Sequence numbers never depend on
the rows: the next one comes from ``subjects.last_sequence``, which archiving never touches."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select

from quote2cash.retention.policy import RetentionPolicy
from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    STATE_COLUMNS,
    event_state,
    events,
    parked_events,
    replay_requests,
)


def store_types(conn: Connection, policy: RetentionPolicy) -> dict[str, list[str]]:
    """The store's event types by class, without those kept forever (read once per run)."""
    return policy.archivable_types(conn.execute(select(events.c.type).distinct()).scalars())


def newest_position(conn: Connection) -> int:
    """The newest event's pos. That event always stays: SQLite numbers a new row after the
    largest one left, so removing the newest would hand its pos to the next event (a restore
    would clash, and a reader keeping its place by pos would skip the new one)."""
    return int(conn.execute(select(func.coalesce(func.max(events.c.pos), 0))).scalar_one())


def archivable(
    conn: Connection,
    types: dict[str, list[str]],
    cutoffs: dict[str, datetime | None],
    limit: int,
    *,
    after: int = 0,
    below: int,
) -> list[Any]:
    """Up to ``limit`` event rows after pos ``after`` and below pos ``below``, in log order."""
    windows = [
        and_(events.c.type.in_(types[cls]), events.c.time < cutoff)
        for cls, cutoff in cutoffs.items()
        if cutoff is not None and types[cls]
    ]
    if not windows:
        return []
    unfinished = events.alias("unfinished")
    unfinished_state = event_state.alias("unfinished_state")
    front = (
        select(unfinished.c.subject, func.min(unfinished.c.sequence).label("sequence"))
        .select_from(unfinished_state.join(unfinished, unfinished.c.pos == unfinished_state.c.pos))
        .where(unfinished_state.c.status != "done")
        .group_by(unfinished.c.subject)
        .subquery("front")
    )
    parked = exists().where(parked_events.c.event_pos == events.c.pos)
    pinned = pinned_positions(conn)
    query = (
        select(events, *STATE_COLUMNS)
        .select_from(EVENTS_WITH_STATE.outerjoin(front, front.c.subject == events.c.subject))
        .where(
            events.c.pos > after,
            events.c.pos < below,
            event_state.c.status == "done",
            or_(*windows),
            or_(front.c.sequence.is_(None), events.c.sequence < front.c.sequence),
            ~parked,
        )
        .order_by(events.c.pos)
        .limit(limit + len(pinned))
    )
    return [r for r in conn.execute(query) if r.pos not in pinned][:limit]


def pinned_positions(conn: Connection) -> set[int]:
    """Events a pending replay request names: its approver must find them in the store."""
    pinned: set[int] = set()
    for (selector,) in conn.execute(
        select(replay_requests.c.selector).where(replay_requests.c.status == "pending")
    ):
        pinned.update(int(p) for p in json.loads(selector).get("positions", []))
    return pinned
