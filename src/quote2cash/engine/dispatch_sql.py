"""The dispatcher's hot SQL, written per backend: one statement per batch, arrays not IN-lists.

PostgreSQL takes arrays (``= ANY``, ``unnest``) so statements stay the same text, are prepared
once and keep index plans; SQLite takes a JSON array through ``json_each`` or ``executemany``.
Everything else in the engine uses SQLAlchemy Core; these few statements run per batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from quote2cash.store.bulk import copy_rows
from quote2cash.store.types import parse_stored_time, sqlite_time_text

_EVENT_COLUMNS = (
    "e.pos, e.event_id, e.source, e.type, e.subject, e.time, e.correlation_id, e.causation_id, "
    "e.sequence, e.schema_version, e.data, s.attempts, e.traceparent"
)

_STEP_COLUMNS = "event_pos, name, idempotency_key, system, result, completed_at"
_AUDIT_COLUMNS = (
    "chain, seq, at, actor, action, entity, correlation_id, details, prev_hash, hash, key_id"
)

SubjectUpdate = tuple[str, int, datetime | None, int | None, str | None]
StepRow = tuple[int, str, str, str | None, str, datetime]
"""(event_pos, name, idempotency_key, system, result, completed_at) of one recorded step."""


def sqlite_time(value: datetime) -> str:
    """The exact text the store's SQLite times are written as (zero-padded, sorts as time)."""
    return sqlite_time_text(value)


def parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if len(value) == 26 and value[4] == "-" and value[10] == " ":  # the store's own text
        return datetime.fromisoformat(value + "+00:00")
    return parse_stored_time(value).replace(tzinfo=UTC)


LOAD_ROUNDS = 16
"""At most this many reads per load: the first asks each claimed subject for an even share of
the batch, the next ones ask only the subjects that filled their share for the room left. A read
that leaves room has a subject that ran out of pending events, which drops out, so the reads end
when the batch is full or no subject has more; the cap only bounds a pathological spread."""


def load_pending(conn: Connection, claimed: Sequence[str], limit: int, postgres: bool) -> list[Any]:
    """Up to ``limit`` pending events of the claimed subjects, in log order: a prefix of each
    subject's pending events.

    Each read takes at most a share of the batch per subject from the pending index (an index
    range per subject that stops at its share), so a load costs what it returns, however many
    events wait behind it or were processed before it: reading the claimed subjects' pending
    events in log order and cutting at ``limit`` walked every processed row ahead of them (135-150
    ms per load with 100,000 events done and 50,000 pending, against 30-50 ms this way). A
    subject that filled its share may hold more; the next read (up to ``LOAD_ROUNDS``) gives the
    room left to those subjects, after the last position each returned, until the batch is full
    or none has more, so one busy subject can still fill the batch."""
    rows: list[Any] = []
    after = dict.fromkeys(claimed, 0)
    for _ in range(LOAD_ROUNDS):
        room = limit - len(rows)
        if room <= 0 or not after:
            break
        share = -(-room // len(after))  # ceil: the shares cover the room
        got = _read_shares(conn, after, share, postgres)
        full: dict[str, int] = {}
        counts: dict[str, int] = {}
        for row in got:
            counts[row[4]] = counts.get(row[4], 0) + 1
        for row in got:
            if counts[row[4]] == share:
                full[row[4]] = max(full.get(row[4], 0), row[0])
        rows += got
        after = full
    rows.sort(key=lambda row: row[0])
    return rows[:limit]


def _read_shares(
    conn: Connection, after: dict[str, int], share: int, postgres: bool
) -> Sequence[Any]:
    """Each subject's first ``share`` pending events after position ``after[subject]``."""
    if postgres:
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM unnest(%s::text[], %s::bigint[]) AS c(subject, after) "
            "CROSS JOIN LATERAL (SELECT s.pos, s.attempts FROM event_state s "
            "WHERE s.subject = c.subject AND s.status = 'pending' AND s.pos > c.after "
            "ORDER BY s.pos LIMIT %s) s JOIN events e ON e.pos = s.pos"
        )
        return conn.exec_driver_sql(sql, (list(after), list(after.values()), share)).fetchall()
    sql = (
        f"SELECT {_EVENT_COLUMNS} FROM json_each(?) AS c JOIN event_state s ON s.pos IN ("
        "SELECT p.pos FROM event_state p WHERE p.subject = c.key AND p.status = 'pending' "
        "AND p.pos > c.value ORDER BY p.pos LIMIT ?) JOIN events e ON e.pos = s.pos"
    )
    return conn.exec_driver_sql(sql, (json.dumps(after), share)).fetchall()


def load_steps(
    conn: Connection, positions: Sequence[int], postgres: bool
) -> dict[int, dict[str, str]]:
    """Steps already completed for these events (a re-run after a crash skips them)."""
    out: dict[int, dict[str, str]] = {}
    if postgres:
        rows = conn.exec_driver_sql(
            "SELECT event_pos, name, result FROM steps WHERE event_pos = ANY(%s)",
            (list(positions),),
        )
    else:
        rows = conn.exec_driver_sql(
            "SELECT event_pos, name, result FROM steps WHERE event_pos IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(list(positions)),),
        )
    for pos, name, result in rows.fetchall():
        out.setdefault(int(pos), {})[name] = result
    return out


def leases_held(conn: Connection, claimed: Sequence[str], owner: str, postgres: bool) -> int:
    """How many of ``claimed`` this worker still leases; on PostgreSQL the rows are locked."""
    if postgres:
        # Rows are locked in subject order, the order appenders lock them in (no deadlock).
        rows = conn.exec_driver_sql(
            "SELECT subject FROM subjects WHERE subject = ANY(%s) AND lease_owner = %s "
            "ORDER BY subject FOR UPDATE",
            (list(claimed), owner),
        )
    else:
        rows = conn.exec_driver_sql(
            "SELECT subject FROM subjects WHERE subject IN (SELECT value FROM json_each(?)) "
            "AND lease_owner = ?",
            (json.dumps(list(claimed)), owner),
        )
    return len(rows.all())


def mark_done(conn: Connection, positions: Sequence[int], now: datetime, postgres: bool) -> None:
    """Completion touches the narrow ``event_state`` rows only, never the event rows."""
    if postgres:
        conn.exec_driver_sql(
            "UPDATE event_state SET status = 'done', processed_at = %s WHERE pos = ANY(%s)",
            (now, list(positions)),
        )
    else:
        conn.exec_driver_sql(
            "UPDATE event_state SET status = 'done', processed_at = ? WHERE pos IN "
            "(SELECT value FROM json_each(?))",
            (sqlite_time(now), json.dumps(list(positions))),
        )


def release_subjects(conn: Connection, updates: Sequence[SubjectUpdate], postgres: bool) -> None:
    """Per subject: fewer pending, next ready time, hold, what it waits on; lease released."""
    if not updates:
        return
    if postgres:
        conn.exec_driver_sql(
            "UPDATE subjects AS s SET pending = s.pending - v.n, ready_at = v.ready, "
            "held_by = v.held, waiting_on = v.waiting, lease_owner = NULL, lease_until = NULL "
            "FROM unnest(%s::text[], %s::bigint[], %s::timestamptz[], %s::bigint[], %s::text[]) "
            "AS v(subject, n, ready, held, waiting) WHERE s.subject = v.subject",
            (
                [u[0] for u in updates],
                [u[1] for u in updates],
                [u[2] for u in updates],
                [u[3] for u in updates],
                [u[4] for u in updates],
            ),
        )
        return
    conn.exec_driver_sql(
        "UPDATE subjects SET pending = pending - ?, ready_at = ?, held_by = ?, waiting_on = ?, "
        "lease_owner = NULL, lease_until = NULL WHERE subject = ?",
        [
            (n, sqlite_time(ready) if ready else None, held, waiting, subject)
            for subject, n, ready, held, waiting in updates
        ],
    )


def insert_steps(conn: Connection, rows: Sequence[StepRow], postgres: bool) -> None:
    """Record completed steps; a (event_pos, name) already recorded raises IntegrityError."""
    if not rows:
        return
    if postgres:
        copy_rows(conn, "steps", _STEP_COLUMNS, rows, binary=True)
        return
    conn.exec_driver_sql(
        f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        [(*row[:5], sqlite_time(row[5])) for row in rows],
    )


AuditRow = tuple[str, int, datetime, str, str, str | None, str | None, str, str, str, str]
"""(chain, seq, at, actor, action, entity, correlation_id, details, prev_hash, hash, key_id)."""


def insert_audit_rows(conn: Connection, rows: Sequence[AuditRow], postgres: bool) -> None:
    """Append signed audit entries: one COPY on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    if postgres:
        copy_rows(conn, "audit_log", _AUDIT_COLUMNS, rows, binary=True)
        return
    first = rows[0][2]  # one commit's entries share their time: formatted once
    stamp = sqlite_time(first)
    conn.exec_driver_sql(
        f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*r[:2], stamp if r[2] is first else sqlite_time(r[2]), *r[3:]) for r in rows],
    )
