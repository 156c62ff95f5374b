"""The event log: an event is committed, with its per-subject sequence, before append returns."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.dispatch_sql import sqlite_time
from quote2cash.engine.events import Event, decode_data, encode_data, validate_envelope
from quote2cash.observability.tracing import current_traceparent
from quote2cash.store.bulk import copy_rows
from quote2cash.store.schema import events

_APPEND_RETRIES = 5


@dataclass(frozen=True, slots=True)
class Appended:
    """The log's receipt: where the event stands in its subject, and whether it was seen before."""

    source: str
    event_id: str
    subject: str
    sequence: int
    duplicate: bool


class EventLog:
    """Appends are idempotent on (source, id): a redelivered event is accepted once."""

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()

    def subject_of(self, source: str, event_id: str) -> str | None:
        """The subject an event was logged under (the business key it was ordered by)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(events.c.subject).where(
                    events.c.source == source, events.c.event_id == event_id
                )
            ).first()
        return None if row is None else str(row[0])

    def first_correlation(self, subject: str) -> str | None:
        """The correlation id the subject's first event carried (its deal's)."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(events.c.correlation_id)
                .where(events.c.subject == subject)
                .order_by(events.c.sequence)
                .limit(1)
            ).scalar_one_or_none()

    def history(
        self, subject: str, types: Sequence[str], *, before: int | None = None
    ) -> list[Event]:
        """A subject's events of ``types`` (before sequence ``before``), newest first."""
        query = (
            select(events)
            .where(events.c.subject == subject, events.c.type.in_(list(types)))
            .order_by(events.c.sequence.desc())
        )
        if before is not None:
            query = query.where(events.c.sequence < before)
        with self.engine.connect() as conn:
            return [
                Event(
                    id=r.event_id,
                    source=r.source,
                    type=r.type,
                    subject=r.subject,
                    time=r.time,
                    correlation_id=r.correlation_id,
                    causation_id=r.causation_id,
                    schema_version=r.schema_version,
                    sequence=r.sequence,
                    pos=r.pos,
                    data=decode_data(r.data),
                    traceparent=r.traceparent,
                )
                for r in conn.execute(query)
            ]

    def append(self, event: Event) -> Appended:
        return self.append_many([event])[0]

    def append_many(self, batch: Sequence[Event]) -> list[Appended]:
        """Commit the whole batch in one transaction; receipts come back in the batch's order."""
        for event in batch:
            validate_envelope(event)
        for attempt in range(_APPEND_RETRIES):
            try:
                with self.engine.begin() as conn:
                    return self.append_in(conn, batch)
            except IntegrityError:
                # A concurrent appender committed the same (source, id) first: look again.
                if attempt == _APPEND_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def append_in(self, conn: Connection, batch: Sequence[Event]) -> list[Appended]:
        """Append inside the caller's transaction (the transactional outbox uses this).

        An event without a ``traceparent`` gets the span in hand's, so its trace goes on."""
        if not batch:
            return []
        postgres = conn.dialect.name == "postgresql"
        seen = _existing(conn, batch, postgres)
        receipts: list[Appended | None] = [None] * len(batch)
        fresh: list[tuple[int, Event]] = []
        in_batch: dict[tuple[str, str], int] = {}
        for i, event in enumerate(batch):
            key = (event.source, event.id)
            if key in seen:
                subject, sequence = seen[key]
                receipts[i] = Appended(event.source, event.id, subject, sequence, True)
            elif key not in in_batch:
                in_batch[key] = i
                fresh.append((i, event))
        if fresh:
            counts: dict[str, int] = defaultdict(int)
            for _, event in fresh:
                counts[event.subject] += 1
            reserve = _reserve_postgres if postgres else _reserve_sqlite
            last = reserve(conn, counts)
            next_seq = {s: last[s] - n + 1 for s, n in counts.items()}
            now = self.clock.now()
            in_hand = current_traceparent()
            rows: list[tuple[object, ...]] = []
            for i, event in fresh:
                seq = next_seq[event.subject]
                next_seq[event.subject] = seq + 1
                rows.append(
                    (
                        event.id,
                        event.source,
                        event.type,
                        event.subject,
                        event.time,
                        event.correlation_id,
                        event.causation_id,
                        seq,
                        event.schema_version,
                        encode_data(event.data),
                        now,
                        event.traceparent or in_hand,
                    )
                )
                receipts[i] = Appended(event.source, event.id, event.subject, seq, False)
            (_copy_postgres if postgres else _insert_sqlite)(conn, rows)
        for i, event in enumerate(batch):
            if receipts[i] is None:
                first = receipts[in_batch[(event.source, event.id)]]
                assert first is not None
                receipts[i] = Appended(event.source, event.id, first.subject, first.sequence, True)
        return [r for r in receipts if r is not None]


_COLUMNS = (
    "event_id, source, type, subject, time, correlation_id, causation_id, sequence, "
    "schema_version, data, recorded_at, traceparent"
)


def _existing(
    conn: Connection, batch: Sequence[Event], postgres: bool
) -> dict[tuple[str, str], tuple[str, int]]:
    """Which events of the batch the log already holds: one indexed lookup per source."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for e in batch:
        by_source[e.source].append(e.id)
    found: dict[tuple[str, str], tuple[str, int]] = {}
    sql = (
        "SELECT e.event_id, e.subject, e.sequence FROM unnest(%s::text[]) AS t(id) "
        "JOIN events e ON e.source = %s AND e.event_id = t.id"
        if postgres
        else "SELECT event_id, subject, sequence FROM events WHERE source = ? AND event_id IN "
        "(SELECT value FROM json_each(?))"
    )
    for source, ids in by_source.items():
        params = (ids, source) if postgres else (source, json.dumps(ids))
        for event_id, subject, sequence in conn.exec_driver_sql(sql, params):
            found[(source, event_id)] = (subject, int(sequence))
    return found


def _reserve_sqlite(conn: Connection, counts: dict[str, int]) -> dict[str, int]:
    """Move each subject's last sequence forward. SQLite's write lock (BEGIN IMMEDIATE) is held
    by this transaction, so read-then-write is atomic."""
    names = list(counts)
    current: dict[str, int] = dict(
        conn.exec_driver_sql(
            "SELECT subject, last_sequence FROM subjects WHERE subject IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(names),),
        ).all()
    )
    conn.exec_driver_sql(
        "INSERT INTO subjects (subject, last_sequence, pending) VALUES (?, ?, ?) "
        "ON CONFLICT (subject) DO UPDATE SET last_sequence = last_sequence + "
        "excluded.last_sequence, pending = pending + excluded.pending",
        [(s, n, n) for s, n in counts.items()],
    )
    return {s: int(current.get(s, 0)) + n for s, n in counts.items()}


def _reserve_postgres(conn: Connection, counts: dict[str, int]) -> dict[str, int]:
    """One atomic upsert; subjects in sorted order so concurrent appenders lock rows alike."""
    ordered = sorted(counts.items())
    rows = conn.exec_driver_sql(
        "INSERT INTO subjects (subject, last_sequence, pending) "
        "SELECT s, n, n FROM unnest(%s::text[], %s::bigint[]) AS t(s, n) "
        "ON CONFLICT (subject) DO UPDATE SET last_sequence = subjects.last_sequence + "
        "excluded.last_sequence, pending = subjects.pending + excluded.pending "
        "RETURNING subject, last_sequence",
        ([s for s, _ in ordered], [n for _, n in ordered]),
    )
    return {subject: int(last) for subject, last in rows}


def _insert_sqlite(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """The event rows, then their dispatch rows (``event_state``) in one statement: this
    transaction holds SQLite's write lock, so every row past the old end is one of ours."""
    recorded = sqlite_time(cast(datetime, rows[0][10])) if rows else None
    end = conn.exec_driver_sql("SELECT coalesce(max(pos), 0) FROM events").scalar_one()
    conn.exec_driver_sql(
        f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*r[:4], sqlite_time(cast(datetime, r[4])), *r[5:10], recorded, r[11]) for r in rows],
    )
    conn.exec_driver_sql(
        "INSERT INTO event_state (pos, subject) SELECT pos, subject FROM events WHERE pos > ?",
        (end,),
    )


def _copy_postgres(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """COPY is PostgreSQL's fastest path; duplicates were filtered out before. Positions are
    taken from the log's sequence first, so the dispatch rows are COPYed beside the events."""
    positions = [
        p
        for (p,) in conn.exec_driver_sql(
            "SELECT nextval(q.seq) FROM (SELECT pg_get_serial_sequence('events', 'pos') AS seq) "
            "AS q, generate_series(1, %s) AS n ORDER BY n",
            (len(rows),),
        )
    ]
    copy_rows(
        conn,
        "events",
        "pos, " + _COLUMNS,
        [(p, *r) for p, r in zip(positions, rows, strict=True)],
        binary=True,  # the times are not formatted as text by the client and parsed by the server
    )
    copy_rows(
        conn,
        "event_state",
        "pos, subject",
        [(p, r[3]) for p, r in zip(positions, rows, strict=True)],
        binary=True,
    )
