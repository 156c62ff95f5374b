"""Signed checkpoints of the audit head, kept outside the store.

A checkpoint (store id, seq, hash, time) of the "main" chain is signed with the audit key and
appended to a JetStream stream that refuses delete and purge, or to an append-only file. Before
each checkpoint the moved heads of the partition chains are anchored into "main", so the
checkpoint covers them too. A database writer who cuts the log back and resets the head cannot move
the last checkpoint, so verify names the removed entries; what can go undetected is bounded by the
entries written after the last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from quote2cash.engine.audit import (
    GENESIS,
    AuditHead,
    Verification,
    anchor_chains,
    canonical_json,
    read_head,
    verify_audit,
)
from quote2cash.engine.audit_key import AuditKey, is_memory_store
from quote2cash.settings import Settings

if TYPE_CHECKING:
    from quote2cash.engine.runtime import Runtime

log = logging.getLogger("quote2cash.audit")
T = TypeVar("T")


class CheckpointError(Exception):
    """The checkpoint destination cannot be read or written; the message names it (no secrets)."""


@dataclass(frozen=True)
class Checkpoint:
    """The audit head at one moment, signed: ``mac`` = HMAC(key, canonical JSON of the rest)."""

    store_id: str
    seq: int
    hash: str
    at: str
    key_id: str
    mac: str = ""

    def body(self) -> str:
        fields = asdict(self)
        fields.pop("mac")
        return canonical_json(fields)

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse one record; CheckpointError if it is not a checkpoint."""
        try:
            raw = json.loads(text)
            return cls(
                store_id=str(raw["store_id"]),
                seq=int(raw["seq"]),
                hash=str(raw["hash"]),
                at=str(raw["at"]),
                key_id=str(raw["key_id"]),
                mac=str(raw["mac"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"not a checkpoint record ({type(exc).__name__})") from None


def sign_checkpoint(key: AuditKey, head: AuditHead, at: datetime) -> Checkpoint:
    if head.store_id is None:
        raise CheckpointError("the audit head has no store id; run `q2c init` to migrate")
    unsigned = Checkpoint(
        head.store_id, head.seq, head.hash, at.astimezone(UTC).isoformat(), key.key_id
    )
    return Checkpoint(**{**asdict(unsigned), "mac": key.sign(unsigned.body())})


class CheckpointStore(Protocol):
    """Where checkpoints live: appended to, never rewritten; ``latest`` for one store."""

    where: str

    async def prepare(self) -> None: ...

    async def append(self, checkpoint: Checkpoint) -> None: ...

    async def latest(self, store_id: str) -> Checkpoint | None: ...


class MemoryCheckpoints:
    """For an in-memory store, which lives no longer than this process either."""

    where = "memory"

    def __init__(self) -> None:
        self._items: list[Checkpoint] = []

    async def prepare(self) -> None:
        return None

    async def append(self, checkpoint: Checkpoint) -> None:
        self._items.append(checkpoint)

    async def latest(self, store_id: str) -> Checkpoint | None:
        mine = [c for c in self._items if c.store_id == store_id]
        return mine[-1] if mine else None


def default_checkpoint_file(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        store = Path(str(parsed.database))
        return store.with_name(store.name + ".audit-checkpoints.jsonl")
    return Path(".q2c") / "audit-checkpoints.jsonl"


def checkpoint_store_for(url: str, settings: Settings | None = None) -> CheckpointStore:
    """JetStream when a nats:// URL is configured, else the checkpoint file."""
    settings = settings or Settings()
    nats_url = settings.audit_checkpoint_url or (
        settings.bus_url if settings.bus_url.startswith(("nats://", "tls://")) else None
    )
    if nats_url:
        from quote2cash.engine.checkpoints_jetstream import JetStreamCheckpoints

        return JetStreamCheckpoints(nats_url, stream=settings.audit_checkpoint_stream)
    if settings.audit_checkpoint_file:
        from quote2cash.engine.checkpoints_file import FileCheckpoints

        return FileCheckpoints(Path(settings.audit_checkpoint_file))
    if is_memory_store(url):
        return MemoryCheckpoints()
    from quote2cash.engine.checkpoints_file import FileCheckpoints

    return FileCheckpoints(default_checkpoint_file(url))


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion from sync code, inside or outside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _head(engine: Engine) -> AuditHead:
    with engine.connect() as conn:
        head = read_head(conn)
    if head is None:
        raise CheckpointError("the audit head row is missing")
    return head


def anchor_now(runtime: Runtime) -> int:
    """Anchor every partition chain that moved into "main"; how many chains it anchored."""
    with runtime.engine.begin() as conn:
        return anchor_chains(conn, runtime.clock.now())


async def write_checkpoint(runtime: Runtime) -> Checkpoint:
    """Anchor the moved partition chains, sign the committed head, append it outside the store."""
    anchor_now(runtime)
    checkpoint = sign_checkpoint(runtime.audit_key, _head(runtime.engine), runtime.clock.now())
    await runtime.checkpoints.append(checkpoint)
    return checkpoint


def checkpoint_now(runtime: Runtime) -> Checkpoint:
    return run_sync(write_checkpoint(runtime))


async def seal_new_store(runtime: Runtime) -> Checkpoint | None:
    """Give a store with an empty log its first checkpoint, so a later missing one is a loss."""
    head = _head(runtime.engine)
    if head.seq != 0 or head.store_id is None:
        return None
    await runtime.checkpoints.prepare()
    if await runtime.checkpoints.latest(head.store_id) is not None:
        return None
    return await write_checkpoint(runtime)


class Checkpointer:
    """Checkpoints the head from a worker or serve loop, at most every ``every_seconds``.

    Only when the head moved; a failure is logged and retried at the next tick, never raised.
    """

    def __init__(self, runtime: Runtime, every_seconds: float | None = None) -> None:
        self.runtime = runtime
        self.every = Settings().audit_checkpoint_seconds if every_seconds is None else every_seconds
        self._next = 0.0
        self._seq: int | None = None

    async def tick(self, *, force: bool = False) -> Checkpoint | None:
        now = time.monotonic()
        if not force and now < self._next:
            return None
        self._next = now + self.every
        try:
            anchor_now(self.runtime)
            head = _head(self.runtime.engine)
            if head.seq == self._seq:
                return None
            checkpoint = await write_checkpoint(self.runtime)
        except Exception as exc:
            log.warning(
                "audit checkpoint to %s failed: %s",
                self.runtime.checkpoints.where,
                type(exc).__name__,
            )
            return None
        self._seq = checkpoint.seq
        return checkpoint


async def checkpoint_forever(runtime: Runtime, stop: asyncio.Event) -> None:
    """Checkpoint a moved head every ``Q2C_AUDIT_CHECKPOINT_SECONDS``, and once more at ``stop``."""
    checkpointer = Checkpointer(runtime)
    while not stop.is_set():
        await checkpointer.tick()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(checkpointer.every, 0.2))
    await checkpointer.tick(force=True)


async def _latest(runtime: Runtime, store_id: str) -> Checkpoint | None:
    return await runtime.checkpoints.latest(store_id)


def verify_store(runtime: Runtime) -> Verification:
    """The keyed chain, its head, and the last signed checkpoint outside the store."""
    key = runtime.audit_key
    where = runtime.checkpoints.where

    def broken(reason: str, store_id: str | None = None) -> Verification:
        return Verification(False, 0, None, reason, key.key_id, store_id)

    try:
        head = _head(runtime.engine)
    except CheckpointError as exc:
        return broken(str(exc))
    if head.store_id is None:
        return broken("the audit head has no store id (migration 0009 not applied)")
    try:
        checkpoint = run_sync(_latest(runtime, head.store_id))
    except CheckpointError as exc:
        return broken(str(exc), head.store_id)
    if checkpoint is None:
        return broken(
            f"no checkpoint of this store in {where} (deleted, or the head's store id changed)",
            head.store_id,
        )
    if checkpoint.key_id != key.key_id:
        return broken(
            f"the last checkpoint in {where} is signed with key {checkpoint.key_id}, not the "
            f"configured audit key {key.key_id} (a checkpoint from another key)",
            head.store_id,
        )
    if not key.holds(checkpoint.body(), checkpoint.mac):
        return broken(
            f"the last checkpoint in {where} does not hold its signature (forged)", head.store_id
        )
    if checkpoint.seq == 0 and checkpoint.hash != GENESIS:
        return broken("the first checkpoint does not start at the genesis hash", head.store_id)
    result = verify_audit(runtime.engine, key=key, checkpoint=(checkpoint.seq, checkpoint.hash))
    return replace(result, checkpoint_seq=checkpoint.seq, checkpoint_at=checkpoint.at)
