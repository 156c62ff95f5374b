"""Dispatch: claim subjects, run their events strictly in sequence, commit outcomes in batches.

A subject is leased by one worker at a time (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
write lock elsewhere). Outcomes are committed only while the lease is still ours (fencing), so a
worker that lost its lease cannot overwrite a newer owner's progress. A failing event stops its
own subject; other subjects in the batch carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import DBAPIError

from quote2cash.engine import dispatch_sql as sql
from quote2cash.engine.audit import AuditEntry, append_audit, worker_chain
from quote2cash.engine.checkpoints import Checkpointer
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import (
    Category,
    PermanentError,
    SystemUnavailable,
    TransientError,
)
from quote2cash.engine.events import Event, decode_data
from quote2cash.engine.outbox import Outgoing, write_outbox
from quote2cash.engine.parking import (
    Park,
    Parked,
    Release,
    backend,
    commit_parking,
    expire_overdue,
    return_to_queues,
)
from quote2cash.engine.projections import project_done
from quote2cash.engine.recorder import (
    COMMIT_ATTEMPTS,
    WAKE_CHUNK,
    StepRecorder,
    StoreThread,
    is_deadlock,
)
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.store_calls import running_store_calls, store_calls_for
from quote2cash.observability import metrics, tracing
from quote2cash.observability.logging import event_context
from quote2cash.store.schema import event_state, failures, subjects

log = logging.getLogger("quote2cash.worker")

P = ParamSpec("P")
R = TypeVar("R")
HOLD_POLL_SECONDS = 5.0
_start_up_frozen = False


def freeze_start_up_heap() -> None:
    """Move every object alive now (modules, settings, the tracing SDK, pools) out of the
    garbage collector's reach, once per process: a full collection then traverses only what the
    work made, not the start-up heap (``gc.freeze``). Those objects live as long as the process
    anyway; a cycle among them that dies later is never collected."""
    global _start_up_frozen
    if not _start_up_frozen:
        _start_up_frozen = True
        gc.freeze()


WORKER_GC_GEN0 = 10_000
"""The young generation's threshold in a process that only runs workers (``q2c worker``):
Python's 700 makes a 5,000-event batch pay about 80 young collections (5-6 us of CPU per event
with one recorded step, ~10 with three); at 10,000 it pays a handful. Not for ``q2c serve``,
whose web requests would then wait longer on each collection."""


def raise_worker_gc_threshold(gen0: int = WORKER_GC_GEN0) -> None:
    """Collect the young generation every ``gen0`` allocations (of container objects) instead of
    every 700, keeping the older generations' ratios; for a process that runs only workers. The
    memory it holds back is bounded by ``gen0`` objects; cycles are still collected."""
    young, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, young), gen1, gen2)


MAX_REREADS = 3
"""How often an event may park on a key already released (it read the release too early) and
run again at once; after that the wait is a transient failure, so it never spins."""


@dataclass
class _Outcome:
    """What happened to one subject's events in this batch."""

    done: list[int] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)
    published: list[Outgoing] = field(default_factory=list)
    """Business events of the outbox: kept whatever the outcome (their steps are recorded)."""
    parked: list[Park] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    failed: dict[str, Any] | None = None
    ready_at: datetime | None = None
    held_by: int | None = None
    waiting_on: str | None = None


@dataclass
class BatchReport:
    claimed_subjects: int = 0
    processed: int = 0
    retried: int = 0
    exceptions: int = 0
    dead: int = 0
    held: int = 0
    parked: int = 0
    unparked: int = 0
    expired: int = 0
    steps_recorded: int = 0
    step_commits: int = 0
    lost_lease: bool = False

    @property
    def idle(self) -> bool:
        return self.claimed_subjects == 0


_COUNTS = (
    "claimed_subjects",
    "processed",
    "retried",
    "exceptions",
    "dead",
    "held",
    "parked",
    "unparked",
    "expired",
    "steps_recorded",
    "step_commits",
)


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """One dispatcher; run several (threads of asyncio, processes, hosts) for more throughput.

    Defaults claim up to 1,000 subjects and 5,000 events a batch and run them all at once: every
    group commit then carries up to a thousand steps, so claims, loads, commits and their audit
    heads are paid per thousand events, not per hundred (outbound calls stay capped per system).
    """

    def __init__(
        self,
        runtime: Runtime,
        registry: Registry,
        *,
        worker_id: str | None = None,
        batch_size: int = 5000,
        max_subjects: int = 1000,
        lease_seconds: float = 60.0,
        concurrency: int = 1000,
        commit_interval: float = 0.25,
        step_linger: float = 0.0,
        refill_seconds: float | None = None,
        nice: int = 0,
    ) -> None:
        self.runtime = runtime
        self.nice = nice
        """The store threads' nice value above the process's (``engine.niceness``): in a process
        that also serves the web, the worker's database work yields the cores to requests."""
        self.registry = registry
        self.worker_id = worker_id or make_worker_id()
        self.batch_size = batch_size
        self.max_subjects = max_subjects
        self.lease = timedelta(seconds=lease_seconds)
        self.concurrency = concurrency
        self.commit_interval = commit_interval
        self._sem = asyncio.Semaphore(concurrency)
        self._postgres = runtime.engine.dialect.name == "postgresql"
        self._steps: dict[int, dict[str, str]] = {}
        self._rereads: defaultdict[int, int] = defaultdict(int)
        self.step_linger = step_linger
        self.refill_seconds = refill_seconds
        """While a batch runs, claim more ready subjects this often (None: a batch ends when its
        last subject does), so subjects waiting on a slow system do not hold the others back."""
        self._store: StoreThread | None = None
        self._flow_store: StoreThread | None = None
        self._recorder: StepRecorder | None = None

    async def _db(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a store call in this worker's store thread: the event loop never waits on it."""
        if self._store is None:
            self._store = StoreThread(f"q2c-store-{self.worker_id}", nice=self.nice)
        return await self._store.call(fn, *args, **kwargs)

    def _flow_calls(self) -> StoreThread:
        """Where this worker's handlers run their own store calls (``engine.store_calls``)."""
        if self._flow_store is None:
            self._flow_store = store_calls_for(
                self.worker_id, self.runtime.engine.dialect.name, nice=self.nice
            )
        return self._flow_store

    def close(self) -> None:
        """Stop the store threads (a later batch starts new ones)."""
        if self._flow_store is not None:
            self._flow_store.close()
        self._flow_store = None
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- the loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, idle_seconds: float = 0.2) -> None:
        """Process until ``stop`` is set; sleeps only when nothing is ready. The audit head is
        checkpointed outside the store every ``Q2C_AUDIT_CHECKPOINT_SECONDS`` and on the way out."""
        checkpointer = Checkpointer(self.runtime)
        freeze_start_up_heap()
        try:
            await self._db(self.recover_dead_leases)
            while not stop.is_set():
                report = await self.run_once(stop)
                await checkpointer.tick()
                if report.idle:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=idle_seconds)
            await checkpointer.tick(force=True)
        finally:
            self.close()

    async def drain(self, *, max_batches: int = 1_000_000) -> BatchReport:
        """Run batches until nothing is ready *now*; returns the summed report."""
        total = BatchReport()
        freeze_start_up_heap()
        try:
            for _ in range(max_batches):
                report = await self.run_once()
                for name in _COUNTS:
                    setattr(total, name, getattr(total, name) + getattr(report, name))
                if report.idle:
                    break
        finally:
            self.close()
        return total

    async def run_once(self, stop: asyncio.Event | None = None) -> BatchReport:
        """Claim a batch and run it; subjects that finish are committed every
        ``commit_interval`` seconds, so one slow call does not hold the others back. Steps are
        group-committed (engine.recorder); every store call runs in the worker's store thread.
        Once ``stop`` is set the batch claims no more subjects (``refill_seconds``) and ends."""
        await self._db(self.runtime.gates.refresh, self.runtime.engine)
        now = self.runtime.clock.now()
        expired = await self._db(expire_overdue, self.runtime.engine, now)
        claimed = await self._db(self._claim, now)
        report = BatchReport(claimed_subjects=len(claimed), expired=expired)
        if not claimed:
            return report
        by_subject = await self._db(self._load, claimed)
        with running_store_calls(self._flow_calls()):
            return await self._run_batch(claimed, by_subject, report, stop)

    async def _run_batch(
        self,
        claimed: list[str],
        by_subject: dict[str, list[tuple[Event, int]]],
        report: BatchReport,
        stop: asyncio.Event | None,
    ) -> BatchReport:
        outcomes = {s: _Outcome() for s in claimed}
        assert self._store is not None
        self._recorder = StepRecorder(
            self.runtime.engine,
            self._store,
            self.runtime.clock,
            chain=worker_chain(self.worker_id),
            linger=self.step_linger,
        )
        finished = [s for s in claimed if s not in by_subject]
        running: dict[asyncio.Task[None], str] = {}
        for n, (subject, subject_events) in enumerate(by_subject.items()):
            if n and n % WAKE_CHUNK == 0:
                await asyncio.sleep(0)  # start them in chunks: the loop polls its sockets between
            task = asyncio.ensure_future(self._run_subject(subject_events, outcomes[subject]))
            running[task] = subject
        heartbeat = asyncio.ensure_future(self._heartbeat(running))
        gates_fresh = asyncio.ensure_future(self._keep_gates_fresh())
        refill_at = monotonic() + (self.refill_seconds or 0.0)
        try:
            waiting = set(running)
            while waiting:
                done, waiting = await asyncio.wait(waiting, timeout=self.commit_interval)
                for task in done:
                    task.result()  # an engine bug must surface, not vanish
                    finished.append(running.pop(task))
                if finished:
                    await self._db(self._commit, finished, by_subject, outcomes, report)
                    finished = []
                stopping = stop is not None and stop.is_set()  # finish the batch, take no more
                if (
                    self.refill_seconds is not None
                    and waiting
                    and not stopping
                    and monotonic() >= refill_at
                ):
                    refill_at = monotonic() + self.refill_seconds
                    started = await self._refill(running, by_subject, outcomes, report)
                    finished += [s for s in started if s not in by_subject]
                    waiting |= {t for t, s in running.items() if s in started}
            if finished:
                await self._db(self._commit, finished, by_subject, outcomes, report)
        finally:
            heartbeat.cancel()
            gates_fresh.cancel()
            for task in running:
                task.cancel()
            await self._recorder.close()
            report.steps_recorded += self._recorder.recorded
            report.step_commits += self._recorder.commits
            self._recorder = None
        return report

    async def _refill(
        self,
        running: dict[asyncio.Task[None], str],
        by_subject: dict[str, list[tuple[Event, int]]],
        outcomes: dict[str, _Outcome],
        report: BatchReport,
    ) -> list[str]:
        """Claim ready subjects up to ``max_subjects`` in flight and start them in this batch;
        returns the subjects claimed (those with nothing to load are finished at once)."""
        room = self.max_subjects - len(running)
        if room <= 0:
            return []
        claimed = await self._db(self._claim, self.runtime.clock.now(), room)
        if not claimed:
            return []
        loaded = await self._db(self._load, claimed, merge=True)
        report.claimed_subjects += len(claimed)
        for subject in claimed:
            outcomes[subject] = _Outcome()
        for subject, subject_events in loaded.items():
            by_subject[subject] = subject_events
            task = asyncio.ensure_future(self._run_subject(subject_events, outcomes[subject]))
            running[task] = subject
        return claimed

    async def _heartbeat(self, running: dict[asyncio.Task[None], str]) -> None:
        """Extend the leases of subjects still running, so a long call does not lose them."""
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            if running:
                await self._db(self._extend_leases, list(running.values()))

    async def _keep_gates_fresh(self) -> None:
        """Reload pauses and maintenance windows off the loop before they age out, so a step's
        gate check never reads the store on the loop (it still does if this falls behind: a
        pause holds every call within the gates' age limit either way)."""
        gates = self.runtime.gates
        while True:
            await self._flow_calls().call(gates.refresh, self.runtime.engine, force=True)
            await asyncio.sleep(max(gates.max_age / 2, 0.05))

    def _extend_leases(self, subject_names: list[str]) -> None:
        until = self.runtime.clock.now() + self.lease
        mine = (
            select(subjects.c.subject)
            .where(
                subjects.c.subject.in_(subject_names),
                subjects.c.lease_owner == self.worker_id,
            )
            .order_by(subjects.c.subject)
        )
        if self._postgres:
            mine = mine.with_for_update()  # in subject order, as appenders lock them
        with self.runtime.engine.begin() as conn:
            conn.execute(
                update(subjects)
                .where(subjects.c.subject.in_(mine.scalar_subquery()))
                .values(lease_until=until)
            )

    # -- claim and load -------------------------------------------------------------------
    def _claim(self, now: datetime, limit: int | None = None) -> list[str]:
        """Lease up to ``max_subjects`` ready subjects: first those whose lease lapsed (a dead
        worker's, which had events in flight), then the longest unclaimed. Skipping locked rows,
        concurrent claimers never wait for each other nor take the same subject."""
        ready = (
            subjects.c.pending > 0,
            subjects.c.held_by.is_(None),
            or_(subjects.c.ready_at.is_(None), subjects.c.ready_at <= now),
        )
        lapsed = (
            select(subjects.c.subject)
            .where(subjects.c.lease_owner.is_not(None), subjects.c.lease_until < now, *ready)
            .order_by(subjects.c.lease_until)
        )
        queued = (
            select(subjects.c.subject)
            .where(
                *ready,
                or_(subjects.c.lease_owner.is_(None), subjects.c.lease_until < now),
            )
            .order_by(subjects.c.claimed_at)
        )
        claimed: list[str] = []
        most = self.max_subjects if limit is None else limit
        with self.runtime.engine.begin() as conn:
            for query in (lapsed, queued):
                room = most - len(claimed)
                if room <= 0:
                    break
                query = query.limit(room)
                if self._postgres:
                    query = query.with_for_update(skip_locked=True)
                stmt = (
                    update(subjects)
                    .where(subjects.c.subject.in_(query.scalar_subquery()))
                    .values(
                        lease_owner=self.worker_id,
                        lease_until=now + self.lease,
                        claimed_at=int(now.timestamp() * 1_000_000),
                    )
                    .returning(subjects.c.subject)
                )
                claimed += [row[0] for row in conn.execute(stmt)]
        return claimed

    def _load(
        self, claimed: list[str], *, merge: bool = False
    ) -> dict[str, list[tuple[Event, int]]]:
        """The claimed subjects' pending events and their recorded steps (``merge``: added to
        the steps of the subjects already running)."""
        by_subject: dict[str, list[tuple[Event, int]]] = defaultdict(list)
        with self.runtime.engine.connect() as conn:
            rows = sql.load_pending(conn, claimed, self.batch_size, self._postgres)
            loaded = sql.load_steps(conn, [r[0] for r in rows], self._postgres) if rows else {}
        if merge:
            self._steps.update(loaded)
        else:
            self._steps = loaded
        for pos, eid, source, type_, subject, time, cid, cause, seq, ver, data, tries, tp in rows:
            ev = Event(
                id=eid,
                source=source,
                type=type_,
                subject=subject,
                time=sql.parse_time(time),
                correlation_id=cid,
                causation_id=cause,
                sequence=seq,
                schema_version=ver,
                data=decode_data(data),
                pos=pos,
                traceparent=tp,
            )
            by_subject[subject].append((ev, tries))
        for subject_events in by_subject.values():
            subject_events.sort(key=lambda item: item[0].sequence or 0)
        return by_subject

    # -- run ------------------------------------------------------------------------------
    async def _run_subject(self, subject_events: list[tuple[Event, int]], out: _Outcome) -> None:
        async with self._sem:
            for event, attempts in subject_events:
                started = metrics.now()
                completed = await self._run_event(event, attempts, out)
                metrics.event_handled(
                    event.type,
                    completed=completed,
                    parked=bool(out.parked) and out.parked[-1].event.pos == event.pos,
                    held=out.waiting_on is not None,
                    failure_status=out.failed["status"] if out.failed else None,
                    started=started,
                )
                if not completed:
                    return

    async def _run_event(self, event: Event, attempts: int, out: _Outcome) -> bool:
        """Run one event in its trace's span; False stops the subject for this batch."""
        with tracing.event_span(event, attempts + 1) as span:
            contexts: list[HandlerContext] = []
            try:
                carry_on = await self._handle_in(event, attempts, out, contexts)
            finally:
                # What the handler published before any failure stays true: its steps are
                # recorded.
                for ctx in contexts:
                    out.published.extend(ctx.published)
            if span.is_recording():
                tracing.set_outcome(span, _outcome_of(event, out))
            return carry_on

    async def _handle_in(
        self, event: Event, attempts: int, out: _Outcome, contexts: list[HandlerContext]
    ) -> bool:
        assert event.pos is not None
        clock = self.runtime.clock
        spec = self.registry.resolve(event.type)
        with event_context(event):
            if spec is None:
                self._fail_permanent(
                    event,
                    attempts,
                    out,
                    PermanentError(
                        f"no handler is registered for event type {event.type!r}",
                        category=Category.MAPPING,
                    ),
                )
                return False
            try:
                for system in spec.systems:
                    self.runtime.gates.check(system)
                ctx = HandlerContext(
                    self.runtime,
                    event,
                    self._steps.get(event.pos, {}),
                    projections=self.registry.projections,
                    recorder=self._recorder,
                )
                contexts.append(ctx)
                await spec.fn(ctx, event)
            except Parked as park:
                if park.released:
                    self._rereads[event.pos] += 1
                    if self._rereads[event.pos] > MAX_REREADS:
                        waits = TransientError(
                            f"{park.reason}: {park.key} is released but the event still waits"
                        )
                        self._fail_transient(event, attempts, out, spec.retry, waits)
                        return False
                out.parked.append(
                    Park(event, park.key, park.reason, str(park.category), park.deadline)
                )
                log.info("parked: %s", park)
                return True
            except SystemUnavailable as hold:
                now = clock.now()
                until = (
                    datetime.fromtimestamp(hold.until, UTC)
                    if hold.until
                    else now + timedelta(seconds=HOLD_POLL_SECONDS)
                )
                out.ready_at = max(until, now + timedelta(milliseconds=1))
                out.waiting_on = hold.system
                log.info("held: %s", hold)
                return False
            except PermanentError as err:
                self._fail_permanent(event, attempts, out, err)
                return False
            except Exception as err:
                self._fail_transient(event, attempts, out, spec.retry, err)
                return False
            self._rereads.pop(event.pos, None)
            out.done.append(event.pos)
            out.emitted.extend(ctx.emitted)
            out.releases.extend(Release(key, event) for key in ctx.releases)
            return True

    def _fail_transient(
        self, event: Event, attempts: int, out: _Outcome, retry: RetryPolicy, err: Exception
    ) -> None:
        """Retry later with backoff, or dead-letter once the retry budget is spent."""
        transient = err if isinstance(err, TransientError) else None
        tracing.record_failure(err)
        tries = attempts + 1
        now = self.runtime.clock.now()
        retry_after = transient.retry_after if transient else None
        failure: dict[str, Any] = {
            "pos": event.pos,
            "attempt": tries,
            "category": None,
            "system": getattr(err, "system", None),
            "error": _describe(err),
            "at": now,
        }
        if retry.exhausted(tries):
            failure.update(kind="dead", status="dead", retry_at=None)
            out.held_by = event.pos
            log.error("dead-lettered after %d attempts: %s", tries, failure["error"])
        else:
            delay = retry.delay(tries, retry_after)
            retry_at = now + timedelta(seconds=delay)
            failure.update(kind="transient", status="pending", retry_at=retry_at)
            out.ready_at = retry_at
            log.warning(
                "attempt %d failed, retry at %s: %s",
                tries,
                retry_at,
                err,
                exc_info=transient is None,  # an unexpected error: keep its traceback
            )
        out.failed = failure

    def _fail_permanent(
        self, event: Event, attempts: int, out: _Outcome, err: PermanentError
    ) -> None:
        assert event.pos is not None
        tracing.record_failure(err)
        out.held_by = event.pos
        out.failed = {
            "pos": event.pos,
            "attempt": attempts + 1,
            "kind": "permanent",
            "status": "exception",
            "category": str(err.category),
            "system": err.system,
            "error": _describe(err),
            "retry_at": None,
            "at": self.runtime.clock.now(),
        }
        log.error("exception (%s): %s", err.category, err)

    # -- commit ---------------------------------------------------------------------------
    def _commit(
        self,
        finished: list[str],
        by_subject: dict[str, list[tuple[Event, int]]],
        outcomes: dict[str, _Outcome],
        report: BatchReport,
    ) -> None:
        """Commit the outcomes; a transaction PostgreSQL chose as a deadlock victim (this
        commit touched another worker's subject, releasing or emitting into it) is tried again."""
        for attempt in range(COMMIT_ATTEMPTS):
            part = BatchReport()
            try:
                self._commit_once(finished, by_subject, outcomes, part)
            except DBAPIError as err:
                if not is_deadlock(err) or attempt == COMMIT_ATTEMPTS - 1:
                    raise
                log.warning("commit chosen as a deadlock victim; trying again")
                continue
            report.lost_lease = report.lost_lease or part.lost_lease
            for name in _COUNTS:
                setattr(report, name, getattr(report, name) + getattr(part, name))
            return

    def _commit_once(
        self,
        finished: list[str],
        by_subject: dict[str, list[tuple[Event, int]]],
        outcomes: dict[str, _Outcome],
        report: BatchReport,
    ) -> None:
        now = self.runtime.clock.now()
        mine = [(s, outcomes[s]) for s in finished]
        done = [pos for _, o in mine for pos in o.done]
        emitted = [e for _, o in mine for e in o.emitted]
        published = [m for _, o in mine for m in o.published]
        failed = [(s, o.failed) for s, o in mine if o.failed is not None]
        parks = [p for _, o in mine for p in o.parked]
        releases = [r for _, o in mine for r in o.releases]
        with self.runtime.engine.begin() as conn:
            # Key rows first, then subject rows: the lock order every committer follows.
            backend(conn).lock_keys(conn, {p.key for p in parks} | {r.key for r in releases})
            if sql.leases_held(conn, finished, self.worker_id, self._postgres) != len(finished):
                conn.rollback()
                report.lost_lease = True
                log.warning("lease lost on part of the batch; its work will be redone")
                return
            if done:
                sql.mark_done(conn, done, now, self._postgres)
                if self.registry.projections:
                    marked = set(done)
                    project_done(
                        self.registry.projections,
                        conn,
                        [e for s in finished for e, _ in by_subject.get(s, ()) if e.pos in marked],
                    )
            audit: list[AuditEntry] = []
            parking = commit_parking(conn, parks, releases, now, audit)
            report.parked += parking.parked
            report.unparked += parking.unparked
            for subject, f in failed:
                assert f is not None
                conn.execute(
                    update(event_state)
                    .where(event_state.c.pos == f["pos"])
                    .values(
                        status=f["status"],
                        attempts=f["attempt"],
                        category=f["category"],
                        last_error=f["error"],
                    )
                )
                conn.execute(
                    insert(failures).values(
                        event_pos=f["pos"],
                        attempt=f["attempt"],
                        kind=f["kind"],
                        category=f["category"],
                        system=f["system"],
                        error=f["error"],
                        retry_at=f["retry_at"],
                        at=f["at"],
                    )
                )
                if f["status"] == "pending":
                    report.retried += 1
                    continue
                if f["status"] == "dead":
                    report.dead += 1
                else:
                    report.exceptions += 1
                ev = next(e for e, _ in by_subject[subject] if e.pos == f["pos"])
                audit.append(
                    AuditEntry(
                        actor="engine",
                        action=f"event.{'dead_lettered' if f['status'] == 'dead' else 'exception'}",
                        entity=subject,
                        correlation_id=ev.correlation_id,
                        details={
                            "event_id": ev.id,
                            "type": ev.type,
                            "category": f["category"],
                            "attempts": f["attempt"],
                            "error": f["error"],
                        },
                    )
                )
            updates: list[sql.SubjectUpdate] = []
            for subject in finished:
                o = outcomes[subject]
                left = 1 if o.failed is not None and o.failed["status"] != "pending" else 0
                if o.waiting_on is not None:
                    report.held += 1
                left += parking.left[subject]
                updates.append((subject, len(o.done) + left, o.ready_at, o.held_by, o.waiting_on))
            sql.release_subjects(conn, updates, self._postgres)
            return_to_queues(conn, parking.returned)
            if emitted:
                self.runtime.log.append_in(conn, emitted)
            write_outbox(conn, published, now)
            append_audit(conn, audit, now, chain=worker_chain(self.worker_id))
        report.processed += len(done)

    def recover_dead_leases(self) -> int:
        """Release leases held by crashed workers of this host (their pid no longer exists)."""
        host = socket.gethostname()
        released = 0
        with self.runtime.engine.begin() as conn:
            owners = conn.execute(
                select(subjects.c.lease_owner)
                .where(subjects.c.lease_owner.like(f"{host}:%"))
                .distinct()
            ).scalars()
            dead = [o for o in owners if o and not _pid_alive(o)]
            if dead:
                result = conn.execute(
                    update(subjects)
                    .where(subjects.c.lease_owner.in_(dead))
                    .values(lease_owner=None, lease_until=None)
                )
                released = result.rowcount
        if released:
            log.warning("released %d subject leases of crashed workers %s", released, dead)
        return released


_FAILED_AS = {"pending": "retried", "dead": "dead_lettered", "exception": "exception"}


def _outcome_of(event: Event, out: _Outcome) -> str:
    """What became of ``event`` in this run: done, retried, exception, dead_lettered, parked or
    held (the q2c.outcome of its span)."""
    if out.failed is not None and out.failed["pos"] == event.pos:
        return _FAILED_AS[out.failed["status"]]
    if out.parked and out.parked[-1].event is event:
        return "parked"
    if event.pos in out.done:
        return "done"
    return "held"


def _pid_alive(owner: str) -> bool:
    try:
        pid = int(owner.split(":")[1])
    except (IndexError, ValueError):
        return True
    return process_alive(pid)


def process_alive(pid: int) -> bool:
    """False only when no process of this host has ``pid`` (this one always counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:4000]
