"""Tamper-evident audit log: append-only entries, each hash chained to the one before it.

hash = SHA-256(prev_hash + canonical JSON of the entry). A head row keeps the last seq and hash,
so truncating the log is caught as well as editing it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from quote2cash.store.schema import audit_head, audit_log

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    entity: str | None = None
    correlation_id: str | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str | None = None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(prev_hash: str, seq: int, at: datetime, entry: AuditEntry, details: str) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": entry.actor,
            "action": entry.action,
            "entity": entry.entity,
            "correlation_id": entry.correlation_id,
            "details": details,
        }
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def append_audit(conn: Connection, entries: list[AuditEntry], at: datetime) -> None:
    """Chain ``entries`` onto the log inside the caller's transaction.

    The head row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction is
    exclusive), so concurrent writers serialise and the chain never forks.
    """
    if not entries:
        return
    at = at.astimezone(UTC)
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).one()
    seq, prev = int(head.seq), str(head.hash)
    rows = []
    for entry in entries:
        seq += 1
        details = canonical_json(entry.details or {})
        digest = _digest(prev, seq, at, entry, details)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor": entry.actor,
                "action": entry.action,
                "entity": entry.entity,
                "correlation_id": entry.correlation_id,
                "details": details,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    conn.execute(insert(audit_log), rows)
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev))


def verify_audit(engine: Engine, *, batch: int = 5000) -> Verification:
    """Recompute the chain from the first entry; name the first entry that does not hold."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    with engine.connect() as conn:
        last_seq = 0
        while True:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.seq > last_seq)
                .order_by(audit_log.c.seq)
                .limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                if row.seq != expected_seq:
                    return Verification(
                        False, checked, expected_seq, f"entry {expected_seq} is missing"
                    )
                if row.prev_hash != prev:
                    return Verification(
                        False, checked, row.seq, "prev_hash does not match the entry before it"
                    )
                entry = AuditEntry(row.actor, row.action, row.entity, row.correlation_id)
                if _digest(prev, row.seq, row.at, entry, row.details) != row.hash:
                    return Verification(
                        False, checked, row.seq, "content does not match its hash (edited)"
                    )
                prev = row.hash
                expected_seq += 1
                checked += 1
                last_seq = row.seq
        head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).one_or_none()
    if head is None:
        return Verification(False, checked, None, "audit head row is missing")
    if head.seq != checked or head.hash != prev:
        return Verification(
            False,
            checked,
            checked + 1 if head.seq > checked else head.seq,
            f"head says {head.seq} entries but the chain has {checked} (truncated or edited)",
        )
    return Verification(True, checked)
