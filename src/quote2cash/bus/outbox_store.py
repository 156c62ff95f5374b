"""The publisher's reads and writes of the outbox: unpublished rows in id order, marks, lag;
its lease is one of the store's named leases (``store/leases.py``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, select, update

from quote2cash.bus.envelope import OutboxRow
from quote2cash.engine.dispatch_sql import parse_time
from quote2cash.store.leases import drop_lease as drop_lease
from quote2cash.store.leases import lease_owner as lease_owner
from quote2cash.store.leases import take_lease as take_lease
from quote2cash.store.schema import outbox

_COLUMNS = (
    outbox.c.id,
    outbox.c.message_id,
    outbox.c.type,
    outbox.c.subject,
    outbox.c.correlation_id,
    outbox.c.causation_id,
    outbox.c.time,
    outbox.c.data,
)


@dataclass(frozen=True)
class Backlog:
    """Rows not yet published and the recording time of the oldest (None: nothing waits)."""

    pending: int
    oldest: datetime | None


def unpublished(engine: Engine, limit: int) -> list[OutboxRow]:
    """The oldest unpublished rows in id order. A row whose transaction committed after a later
    id's is read on the next call: read by state, not by a cursor, so none is skipped."""
    query = (
        select(*_COLUMNS).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id).limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        OutboxRow(
            int(r.id),
            r.message_id,
            r.type,
            r.subject,
            r.correlation_id,
            r.causation_id,
            parse_time(r.time),
            r.data,
        )
        for r in rows
    ]


def mark_published(engine: Engine, ids: Sequence[int], at: datetime) -> None:
    """One statement per batch."""
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(list(ids)), outbox.c.published_at.is_(None))
            .values(published_at=at)
        )


def mark_published_messages(engine: Engine, message_ids: Collection[str], at: datetime) -> int:
    """Mark the rows the stream already holds (found by message id); returns how many."""
    if not message_ids:
        return 0
    with engine.begin() as conn:
        result = conn.execute(
            update(outbox)
            .where(outbox.c.message_id.in_(list(message_ids)), outbox.c.published_at.is_(None))
            .values(published_at=at)
        )
    return max(result.rowcount or 0, 0)


def backlog(engine: Engine) -> Backlog:
    query = select(func.count(), func.min(outbox.c.recorded_at)).where(
        outbox.c.published_at.is_(None)
    )
    with engine.connect() as conn:
        count, oldest = conn.execute(query).one()
    return Backlog(int(count), parse_time(oldest) if oldest is not None else None)


def prune_published(engine: Engine, before: datetime, *, limit: int = 10_000) -> int:
    """Delete up to ``limit`` rows published before ``before`` (the stream holds them now);
    unpublished rows are never touched. Returns how many went."""
    with engine.begin() as conn:
        ids = (
            conn.execute(
                select(outbox.c.id)
                .where(outbox.c.published_at.is_not(None), outbox.c.published_at < before)
                .order_by(outbox.c.id)
                .limit(limit)
            )
            .scalars()
            .all()
        )
        if ids:
            conn.execute(delete(outbox).where(outbox.c.id.in_(ids)))
    return len(ids)
