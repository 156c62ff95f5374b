"""Tamper-evident audit log: append-only entries, each signed and chained to the one before it.

hash = HMAC-SHA256(audit key, prev_hash + canonical JSON of the entry and the key's id). The key
lives outside the store (engine.audit_key), so a database writer cannot recompute the chain; the
head row keeps the last seq and hash, and signed checkpoints outside the store (engine.checkpoints)
catch a log cut back together with its head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from quote2cash.engine.audit_key import AuditKey, key_for
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
    key_id: str | None = None
    store_id: str | None = None
    checkpoint_seq: int | None = None
    checkpoint_at: str | None = None


@dataclass(frozen=True)
class AuditHead:
    """The last entry as the store says: what a checkpoint signs."""

    store_id: str | None
    seq: int
    hash: str


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(
    key: AuditKey, prev_hash: str, seq: int, at: datetime, entry: AuditEntry, details: str
) -> str:
    body = canonical_json(
        {
            "key_id": key.key_id,
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": entry.actor,
            "action": entry.action,
            "entity": entry.entity,
            "correlation_id": entry.correlation_id,
            "details": details,
        }
    )
    return key.sign(prev_hash + body)


def worker_chain(worker_id: str) -> str:
    """The audit chain a worker's step records are appended to (one writer per chain)."""
    return f"worker:{worker_id}"


def append_audit(
    conn: Connection, entries: list[AuditEntry], at: datetime, *, chain: str = "main"
) -> None:
    """Chain ``entries`` onto the log inside the caller's transaction.

    The head row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction is
    exclusive), so concurrent writers serialise and the chain never forks. Entries are signed
    with the key bound to the connection's engine (the Runtime binds it).
    """
    if not entries:
        return
    key = key_for(conn.engine)
    at = at.astimezone(UTC)
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).one()
    seq, prev = int(head.seq), str(head.hash)
    rows = []
    for entry in entries:
        seq += 1
        details = canonical_json(entry.details or {})
        digest = _digest(key, prev, seq, at, entry, details)
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
                "key_id": key.key_id,
            }
        )
        prev = digest
    conn.execute(insert(audit_log), rows)
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev))


def read_head(conn: Connection) -> AuditHead | None:
    row = conn.execute(select(audit_head).where(audit_head.c.id == 1)).one_or_none()
    return None if row is None else AuditHead(row.store_id, int(row.seq), str(row.hash))


def verify_audit(
    engine: Engine,
    *,
    batch: int = 5000,
    key: AuditKey | None = None,
    checkpoint: tuple[int, str] | None = None,
) -> Verification:
    """Recompute the keyed chain from the first entry; name the first entry that does not hold.

    ``checkpoint`` (seq, hash), read from outside the store, must lie on the chain: a log cut
    back or rewritten before it fails even when its head row was reset to match.
    """
    key = key or key_for(engine)
    prev = GENESIS
    expected_seq = 1
    checked = 0

    def broken(seq: int | None, reason: str) -> Verification:
        return Verification(False, checked, seq, reason, key.key_id, store_id)

    with engine.connect() as conn:
        head = read_head(conn)
        store_id = head.store_id if head else None
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
                    return broken(expected_seq, f"entry {expected_seq} is missing")
                if row.prev_hash != prev:
                    return broken(row.seq, "prev_hash does not match the entry before it")
                if row.key_id != key.key_id:
                    signer = f"key {row.key_id}" if row.key_id else "no key"
                    return broken(
                        row.seq,
                        f"signed with {signer}, not the configured audit key {key.key_id} "
                        "(wrong key, or forged without it)",
                    )
                entry = AuditEntry(row.actor, row.action, row.entity, row.correlation_id)
                if _digest(key, prev, row.seq, row.at, entry, row.details) != row.hash:
                    return broken(row.seq, "content does not match its signed hash (edited)")
                if checkpoint and row.seq == checkpoint[0] and row.hash != checkpoint[1]:
                    return broken(
                        row.seq, "differs from the signed checkpoint (the chain was rewritten)"
                    )
                prev = row.hash
                expected_seq += 1
                checked += 1
                last_seq = row.seq
    if head is None:
        return broken(None, "audit head row is missing")
    if head.seq != checked or head.hash != prev:
        return broken(
            checked + 1 if head.seq > checked else head.seq,
            f"head says {head.seq} entries but the chain has {checked} (truncated or edited)",
        )
    if checkpoint and checkpoint[0] > checked:
        what = "wiped" if checked == 0 else "truncated"
        return broken(
            checked + 1,
            f"a signed checkpoint covers {checkpoint[0]} entries but the log has {checked}: "
            f"entries {checked + 1}..{checkpoint[0]} were removed ({what}, head reset)",
        )
    return Verification(True, checked, key_id=key.key_id, store_id=store_id)
