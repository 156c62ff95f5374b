"""Tamper-evident audit log: append-only entries, each signed and chained to the one before it.

hash = HMAC-SHA256(audit key, prev_hash + canonical JSON of the entry and the key's id). The key
lives outside the store (engine.audit_key), so a database writer cannot recompute the chain; the
head row keeps the last seq and hash, and signed checkpoints outside the store (engine.checkpoints)
catch a log cut back together with its head.

The log is partitioned into chains so writers never share one row: each chain has its own head
row, its own seq from 1 and its own genesis, and a partition chain's name is signed into each of
its entries. ``anchor_chains`` writes the moved heads of the partition chains into "main", whose
head the checkpoints sign, so one verifiable root covers every chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, Engine, and_, or_, select, update

from quote2cash.engine.audit_key import AuditKey, key_for
from quote2cash.engine.dispatch_sql import AuditRow, insert_audit_rows
from quote2cash.store.schema import audit_anchors, audit_head
from quote2cash.store.upsert import insert_missing, upsert_row

GENESIS = "0" * 64
MAIN_CHAIN: Final = "main"
ANCHOR_ACTION: Final = "audit.anchor"
CHAIN_MAX: Final = 200


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    entity: str | None = None
    correlation_id: str | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verification:
    """What verify found: ``chain`` and ``first_broken_seq`` name the first entry that fails."""

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str | None = None
    key_id: str | None = None
    store_id: str | None = None
    checkpoint_seq: int | None = None
    checkpoint_at: str | None = None
    chain: str | None = None
    chains: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditHead:
    """The last entry of a chain as the store says: what a checkpoint signs (for "main")."""

    store_id: str | None
    seq: int
    hash: str
    chain: str = MAIN_CHAIN


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)
"""One encoder for every entry: ``json.dumps`` with these options builds a new one per call."""
_PLAIN_ENCODER = msgspec.json.Encoder(order="sorted")
"""Gives the same text as ``_CANONICAL`` for plain values (``_plain``), ten times faster."""
_SCALARS: Final = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> bool:
    """Only str, int, bool, None and dicts (str keys) and lists of them: the values whose JSON
    text msgspec writes exactly as ``json`` does (sorted keys, no ASCII escaping, no spaces).
    Floats, Decimals, times, tuples and subclasses (enums) take ``json``'s own path."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str or (type(v) not in _SCALARS and not _plain(v)):
                return False
        return True
    if kind is list:
        return all(type(v) in _SCALARS or _plain(v) for v in value)
    return False


def _plain_bytes(value: Any) -> bytes | None:
    """msgspec's UTF-8 text of a value already known plain, or None where only ``json`` can
    write it (a lone surrogate, an int past 64 bits)."""
    try:
        return _PLAIN_ENCODER.encode(value)
    except (UnicodeEncodeError, OverflowError, TypeError):
        return None


def canonical_json(value: Any) -> str:
    """The exact text ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, default=str)`` gives: what every stored entry was signed over."""
    if _plain(value) and (fast := _plain_bytes(value)) is not None:
        return fast.decode()
    return _CANONICAL.encode(value)


def worker_chain(worker_id: str) -> str:
    """The chain a worker writes its step entries to: its own, so no other writer waits on it."""
    name = f"worker:{worker_id}"
    if len(name) > CHAIN_MAX:
        name = f"worker:{hashlib.sha256(worker_id.encode()).hexdigest()[:32]}"
    return name


def _check_chain(chain: str) -> None:
    if not chain or len(chain) > CHAIN_MAX:
        raise ValueError(f"audit chain name {chain[:40]!r}: expected 1 to {CHAIN_MAX} characters")


_TEXT: Final = frozenset({str, type(None)})


def _signed_body(
    key_id: str,
    seq: int,
    at_text: str,
    actor: str,
    action: str,
    entity: str | None,
    correlation_id: str | None,
    details: str,
    chain: str,
) -> bytes:
    """The UTF-8 canonical JSON an entry's signature covers; "main" entries sign exactly the
    body they did before chains. Text fields go straight to msgspec (no ``_plain`` walk)."""
    body: dict[str, Any] = {
        "key_id": key_id,
        "seq": seq,
        "at": at_text,
        "actor": actor,
        "action": action,
        "entity": entity,
        "correlation_id": correlation_id,
        "details": details,
    }
    if chain != MAIN_CHAIN:
        body["chain"] = chain
    if (
        type(actor) is str
        and type(action) is str
        and type(details) is str
        and type(entity) in _TEXT
        and type(correlation_id) in _TEXT
        and type(seq) is int
        and (fast := _plain_bytes(body)) is not None
    ):
        return fast
    return canonical_json(body).encode()


def _digest(
    key: AuditKey,
    prev_hash: str,
    seq: int,
    at: datetime,
    entry: AuditEntry,
    details: str,
    chain: str = MAIN_CHAIN,
    *,
    at_text: str | None = None,
) -> str:
    """The entry's signature. ``at_text`` is ``at`` as signed, when the caller has it already
    (one per batch)."""
    body = _signed_body(
        key.key_id,
        seq,
        at_text or at.astimezone(UTC).isoformat(timespec="microseconds"),
        entry.actor,
        entry.action,
        entry.entity,
        entry.correlation_id,
        details,
        chain,
    )
    return key.sign_bytes(prev_hash.encode() + body)


def _lock_head(conn: Connection, chain: str) -> tuple[int, str]:
    """This chain's head, locked for the transaction; a new chain's row is made at genesis."""
    query = (
        select(audit_head.c.seq, audit_head.c.hash)
        .where(audit_head.c.chain == chain)
        .with_for_update()
    )
    head = conn.execute(query).one_or_none()
    if head is None:
        insert_missing(conn, audit_head, {"chain": chain, "seq": 0, "hash": GENESIS}, key="chain")
        head = conn.execute(query).one()
    return int(head.seq), str(head.hash)


def append_audit(
    conn: Connection, entries: list[AuditEntry], at: datetime, *, chain: str = MAIN_CHAIN
) -> None:
    """Chain ``entries`` onto ``chain`` inside the caller's transaction.

    The chain's head row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write
    transaction is exclusive), so writers of one chain serialise and it never forks, while
    writers of different chains never lock the same row. Entries are signed with the key bound
    to the connection's engine (the Runtime binds it).
    """
    texts = [
        (e.actor, e.action, e.entity, e.correlation_id, canonical_json(e.details or {}))
        for e in entries
    ]
    append_audit_texts(conn, texts, at, chain=chain)


AuditText = tuple[str, str, str | None, str | None, str]
"""(actor, action, entity, correlation_id, details) of an entry to append, its details already
their canonical JSON (``canonical_json``, or ``canonical_texts`` for a dict of strings)."""


def canonical_texts(details: dict[str, str | None]) -> str:
    """``canonical_json`` of a dict whose values are str or None (a step entry's details),
    without walking it first; anything else still takes ``canonical_json``'s own path."""
    if (
        all(type(value) in _TEXT for value in details.values())
        and (fast := _plain_bytes(details)) is not None
    ):
        return fast.decode()
    return canonical_json(details)


def append_audit_texts(
    conn: Connection, entries: Sequence[AuditText], at: datetime, *, chain: str = MAIN_CHAIN
) -> None:
    """``append_audit`` for entries whose details are already canonical JSON: the group
    commit's path, one pass over its entries (digest and row together)."""
    if not entries:
        return
    _check_chain(chain)
    key = key_for(conn.engine)
    key_id = key.key_id
    sign = key.sign_bytes
    at = at.astimezone(UTC)
    seq, prev = _lock_head(conn, chain)
    at_text = at.isoformat(timespec="microseconds")
    rows: list[AuditRow] = []
    append = rows.append
    for actor, action, entity, correlation_id, details in entries:
        seq += 1
        body = _signed_body(
            key_id, seq, at_text, actor, action, entity, correlation_id, details, chain
        )
        digest = sign(prev.encode() + body)
        append(
            (chain, seq, at, actor, action, entity, correlation_id, details, prev, digest, key_id)
        )
        prev = digest
    insert_audit_rows(conn, rows, conn.dialect.name == "postgresql")
    conn.execute(update(audit_head).where(audit_head.c.chain == chain).values(seq=seq, hash=prev))


def read_head(conn: Connection, chain: str = MAIN_CHAIN) -> AuditHead | None:
    row = conn.execute(select(audit_head).where(audit_head.c.chain == chain)).one_or_none()
    return None if row is None else AuditHead(row.store_id, int(row.seq), str(row.hash), chain)


def read_heads(conn: Connection) -> dict[str, AuditHead]:
    """Every chain's head row, by chain name."""
    return {
        row.chain: AuditHead(row.store_id, int(row.seq), str(row.hash), str(row.chain))
        for row in conn.execute(select(audit_head))
    }


def _moved_heads(conn: Connection) -> list[dict[str, Any]]:
    """Partition chains whose committed head differs from the head last anchored into "main"."""
    query = (
        select(audit_head.c.chain, audit_head.c.seq, audit_head.c.hash)
        .select_from(
            audit_head.outerjoin(audit_anchors, audit_anchors.c.chain == audit_head.c.chain)
        )
        .where(
            and_(
                audit_head.c.chain != MAIN_CHAIN,
                audit_head.c.seq > 0,
                or_(
                    audit_anchors.c.chain.is_(None),
                    audit_anchors.c.seq != audit_head.c.seq,
                    audit_anchors.c.hash != audit_head.c.hash,
                ),
            )
        )
        .order_by(audit_head.c.chain)
    )
    return [{"chain": r.chain, "seq": int(r.seq), "hash": str(r.hash)} for r in conn.execute(query)]


def anchor_chains(conn: Connection, at: datetime) -> int:
    """Write the heads of partition chains that moved since the last anchor into "main".

    One ``audit.anchor`` entry lists each moved head (chain, seq, hash); as "main" is what the
    signed checkpoints cover, every anchored head is covered too. Reads committed heads without
    locking them (a writer of a partition chain never waits on this); when nothing moved it is
    one query and writes nothing. Returns how many chains it anchored.
    """
    if not _moved_heads(conn):
        return 0
    _lock_head(conn, MAIN_CHAIN)
    moved = _moved_heads(conn)  # again under main's lock: another anchorer may have been first
    if not moved:
        return 0
    append_audit(conn, [AuditEntry("engine", ANCHOR_ACTION, details={"heads": moved})], at)
    for head in moved:
        upsert_row(conn, audit_anchors, head, key="chain")
    return len(moved)


def verify_audit(
    engine: Engine,
    *,
    batch: int = 5000,
    key: AuditKey | None = None,
    checkpoint: tuple[int, str] | None = None,
) -> Verification:
    """Recompute every chain from its genesis; name the chain and first entry that do not hold.

    ``checkpoint`` (seq, hash of "main"), read from outside the store, must lie on "main": a log
    cut back or rewritten before it fails even when its head row was reset to match. Every head
    anchored in "main" must lie on its chain, and every head row must match its chain.
    """
    from quote2cash.engine.audit_verify import ChainVerifier

    return ChainVerifier(engine, key or key_for(engine), batch).run(checkpoint)
