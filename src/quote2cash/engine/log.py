"""The event log: an event is committed, with its per-subject sequence, before append returns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, Engine, String, any_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.events import Event, encode_data, validate_envelope
from quote2cash.store.schema import events, subjects

T = TypeVar("T")

_APPEND_RETRIES = 5
_IN_CHUNK = 500


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
        """Append inside the caller's transaction (the transactional outbox uses this)."""
        if not batch:
            return []
        seen = _existing(conn, batch)
        receipts: list[Appended | None] = [None] * len(batch)
        fresh: list[tuple[int, Event]] = []
        in_batch: dict[tuple[str, str], int] = {}
        for i, event in enumerate(batch):
            key = (event.source, event.id)
            if key in seen:
                subject, sequence = seen[key]
                receipts[i] = Appended(event.source, event.id, subject, sequence, True)
            elif key in in_batch:
                receipts[i] = None  # resolved below, once the first copy has its sequence
            else:
                in_batch[key] = i
                fresh.append((i, event))
        if fresh:
            counts: dict[str, int] = defaultdict(int)
            for _, event in fresh:
                counts[event.subject] += 1
            last = _reserve_sequences(conn, counts)
            next_seq = {s: last[s] - n + 1 for s, n in counts.items()}
            now = self.clock.now()
            rows = []
            for i, event in fresh:
                seq = next_seq[event.subject]
                next_seq[event.subject] = seq + 1
                rows.append(
                    {
                        "event_id": event.id,
                        "source": event.source,
                        "type": event.type,
                        "subject": event.subject,
                        "time": event.time,
                        "correlation_id": event.correlation_id,
                        "causation_id": event.causation_id,
                        "sequence": seq,
                        "schema_version": event.schema_version,
                        "data": encode_data(event.data),
                        "status": "pending",
                        "attempts": 0,
                        "recorded_at": now,
                    }
                )
                receipts[i] = Appended(event.source, event.id, event.subject, seq, False)
            conn.execute(events.insert(), rows)
        for i, event in enumerate(batch):
            if receipts[i] is None:
                first = receipts[in_batch[(event.source, event.id)]]
                assert first is not None
                receipts[i] = Appended(event.source, event.id, first.subject, first.sequence, True)
        return [r for r in receipts if r is not None]


def _existing(conn: Connection, batch: Sequence[Event]) -> dict[tuple[str, str], tuple[str, int]]:
    """Which events of the batch the log already holds; one indexed lookup per source."""
    by_source: dict[str, set[str]] = defaultdict(set)
    for e in batch:
        by_source[e.source].add(e.id)
    postgres = conn.dialect.name == "postgresql"
    found: dict[tuple[str, str], tuple[str, int]] = {}
    cols = (events.c.event_id, events.c.subject, events.c.sequence)
    for source, id_set in by_source.items():
        ids = sorted(id_set)
        for chunk in [ids] if postgres else _chunks(ids, _IN_CHUNK):
            match = (
                events.c.event_id == any_(bindparam("ids", list(chunk), type_=ARRAY(String)))
                if postgres
                else events.c.event_id.in_(chunk)
            )
            for event_id, subject, sequence in conn.execute(
                select(*cols).where(events.c.source == source, match)
            ):
                found[(source, event_id)] = (subject, sequence)
    return found


def _reserve_sequences(conn: Connection, counts: dict[str, int]) -> dict[str, int]:
    """Atomically move each subject's last sequence forward; returns the new last values.

    Subjects are upserted in sorted order so concurrent appenders lock rows in the same order.
    """
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    last: dict[str, int] = {}
    ordered = sorted(counts.items())
    for chunk in _chunks(ordered, _IN_CHUNK):
        base = insert(subjects).values(
            [{"subject": s, "last_sequence": n, "pending": n} for s, n in chunk]
        )
        stmt = base.on_conflict_do_update(
            index_elements=[subjects.c.subject],
            set_={
                "last_sequence": subjects.c.last_sequence + base.excluded.last_sequence,
                "pending": subjects.c.pending + base.excluded.pending,
            },
        ).returning(subjects.c.subject, subjects.c.last_sequence)
        for subject, last_sequence in conn.execute(stmt):
            last[subject] = int(last_sequence)
    return last


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
