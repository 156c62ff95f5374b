"""Group commit of step records: many handlers' steps in one transaction, off the event loop.

``StepRecorder.record`` queues a step row, its audit entry and its projection calls and returns
only once they are committed, so a side effect is never repeated after its step is recorded; a
crash before the commit re-runs the step with the same idempotency key. The flusher commits
whatever is queued as soon as the previous commit ends (or ``max_batch`` rows are waiting), in
the worker's store thread, so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Final, NamedTuple, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from quote2cash.engine import dispatch_sql as sql
from quote2cash.engine.audit import AuditEntry, AuditText, append_audit_texts, canonical_texts
from quote2cash.engine.clock import Clock
from quote2cash.engine.niceness import lower_thread_priority
from quote2cash.engine.projections import Projection, project_step

if TYPE_CHECKING:
    from quote2cash.engine.events import Event

log = logging.getLogger("quote2cash.engine")
P = ParamSpec("P")
R = TypeVar("R")
DEADLOCK_SQLSTATE = "40P01"
COMMIT_ATTEMPTS = 3
STEP_ACTION: Final = "step.completed"
WAKE_CHUNK = 32
"""Handlers woken per loop iteration after a commit: a web app on the same loop waits at most
for that many handlers' next stretch of work, not for all of a batch's."""


class StoreThread:
    """One thread that runs a worker's store calls in order, so the event loop stays free
    (``threads`` > 1: calls that need no order among themselves, run side by side)."""

    def __init__(self, name: str, *, threads: int = 1, nice: int = 0) -> None:
        """``nice``: each thread's nice value raised by this much (``engine.niceness``)."""
        self._executor = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix=name,
            initializer=lower_thread_priority,
            initargs=(nice,),
        )

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` in the store thread with the caller's context (log fields, trace)."""
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class StepRecord(NamedTuple):
    """One completed step as it will be stored: row, audit entry and read-model updates (a
    tuple: one is made per step on the event loop)."""

    event: Event
    name: str
    key: str
    system: str | None
    result: str
    completed_at: datetime
    actor: str
    projections: Sequence[Projection] = ()

    @property
    def position(self) -> int:
        assert self.event.pos is not None, "only a logged event's steps are recorded"
        return self.event.pos

    def audit_entry(self) -> AuditEntry:
        return AuditEntry(
            actor=self.actor,
            action=STEP_ACTION,
            entity=self.event.subject,
            correlation_id=self.event.correlation_id,
            details=self._details(),
        )

    def audit_text(self) -> AuditText:
        """``audit_entry`` with its details as their canonical JSON (what is signed)."""
        event = self.event
        details = canonical_texts(self._details())
        return (self.actor, STEP_ACTION, event.subject, event.correlation_id, details)

    def _details(self) -> dict[str, str | None]:
        return {
            "event_id": self.event.id,
            "type": self.event.type,
            "step": self.name,
            "system": self.system,
            "idempotency_key": self.key,
        }


def write_steps(
    conn: Connection, records: Sequence[StepRecord], at: datetime, chain: str = "main"
) -> None:
    """Insert ``records`` with their projections and audit entries in ``conn``'s transaction."""
    rows: list[sql.StepRow] = []
    texts: list[AuditText] = []
    for r in records:
        event = r.event
        assert event.pos is not None, "only a logged event's steps are recorded"
        rows.append((event.pos, r.name, r.key, r.system, r.result, r.completed_at))
        texts.append(r.audit_text())
    sql.insert_steps(conn, rows, conn.dialect.name == "postgresql")
    for r in records:
        if r.projections:
            project_step(r.projections, conn, r.event, r.name, r.result)
    append_audit_texts(conn, texts, at, chain=chain)


def is_deadlock(err: DBAPIError) -> bool:
    """PostgreSQL chose this transaction as a deadlock victim: trying it again is safe."""
    return getattr(err.orig, "sqlstate", None) == DEADLOCK_SQLSTATE


def commit_steps(
    engine: Engine, records: Sequence[StepRecord], at: datetime, chain: str = "main"
) -> int:
    """Commit ``records`` in one transaction; returns how many were already recorded.

    A step another worker recorded before us (the same idempotency key, so its side effect
    happened once) makes the batch fail on its key; then each record is committed on its own and
    the ones already there are skipped. A PostgreSQL deadlock victim is tried again.
    """
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            with engine.begin() as conn:
                write_steps(conn, records, at, chain)
            return 0
        except IntegrityError:
            break
        except DBAPIError as err:
            if not is_deadlock(err):
                raise
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
    skipped = 0
    for record in records:
        try:
            with engine.begin() as conn:
                write_steps(conn, [record], at, chain)
        except IntegrityError:
            skipped += 1
            log.info("step %s of event %s was already recorded", record.name, record.event.id)
    return skipped


_Waiting = tuple[StepRecord, "asyncio.Future[None]"]
"""A queued record and the future its handler awaits (done once the record is committed)."""


class StepRecorder:
    """Per worker and batch: queues step records and group-commits them in the store thread.

    ``linger`` holds a commit back after the first record arrives, for more to join it (tests
    use it to widen the window between queueing a record and committing it); ``max_batch``
    caps one transaction.
    """

    def __init__(
        self,
        engine: Engine,
        store: StoreThread,
        clock: Clock,
        *,
        chain: str = "main",
        linger: float = 0.0,
        max_batch: int = 2000,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.chain = chain
        self.linger = linger
        self.max_batch = max_batch
        self.commits = 0
        self.recorded = 0
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def record(self, record: StepRecord) -> asyncio.Future[None]:
        """Queue ``record``; the future it returns is done once the record is committed (or
        was recorded before by another worker). A plain call, not a coroutine: a handler awaits
        the future itself, and a cancelled handler cancels only that wait (the batch still
        commits)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append((record, done))
        self._wake.set()
        if self._flusher is None:
            # A context of its own: the commit belongs to no one handler's trace or log fields.
            self._flusher = loop.create_task(self._flush_forever(), context=contextvars.Context())
        return done

    async def close(self) -> None:
        """Commit what is queued, then stop the flusher."""
        if self._flusher is None:
            return
        while self._queue:
            await self._flush()
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        self._flusher = None

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            if self.linger > 0 and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.linger)
            else:
                await asyncio.sleep(0)  # let handlers already running queue theirs too
            await self._flush()

    async def _flush(self) -> None:
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        if not self._queue:
            self._wake.clear()
        if not batch:
            return
        try:
            await self.store.call(
                commit_steps, self.engine, [r for r, _ in batch], self.clock.now(), self.chain
            )
        except Exception as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
                    # Marked as seen: a handler cancelled before it resumes leaves no "never
                    # retrieved" error behind; one that resumes still raises it. (No done
                    # callback per step: each would cost the loop a call_soon.)
                    done.exception()
            return
        self.commits += 1
        self.recorded += len(batch)
        for start in range(0, len(batch), WAKE_CHUNK):
            if start:
                await asyncio.sleep(0)  # the loop polls its sockets between chunks
            for _, done in batch[start : start + WAKE_CHUNK]:
                if not done.done():
                    done.set_result(None)
