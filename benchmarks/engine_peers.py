"""The engine benchmark's peers: the same N jobs across S keys through other PostgreSQL-backed
job systems, each set up as its own documentation recommends, plus the raw-insert ceiling.

Each job does the equivalent of one recorded step: one INSERT of a result row in its own
transaction. Each function runs in a child process on a fresh database (see
``engine_throughput.py``), installs the peer's schema with the peer's own installer, and returns
the end-to-end rate (the one compared), the enqueue rate, the rate from the last enqueue to the
last result (DBOS runs jobs while they are being enqueued, the others after), and
``order_violations``: result rows of a key written after a later job of the same key (0 when
per-key order held).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from quote2cash.engine.events import Event

BATCH = 1000
DBOS_ENQUEUERS = 10
PGQUEUER_BATCH = 25
RESULTS_DDL = (
    "CREATE TABLE bench_results (id bigserial PRIMARY KEY, job bigint NOT NULL UNIQUE, "
    "subject text NOT NULL)"
)
INSERT_RESULT = "INSERT INTO bench_results (job, subject) VALUES (%s, %s)"

# What each system promises for this workload: per-key order, side effects recorded once, audit.
GUARANTEES = {
    "engine": "per-key order; each step recorded once with its idempotency key; keyed audit entry",
    "procrastinate_locked": "per-key order via lock=subject; at-least-once job; no step record, "
    "no audit",
    "pgqueuer": "no per-key order (only per-entrypoint limits); at-least-once job; no step "
    "record, no audit",
    "dbos": "per-key order via a partitioned queue (partition_concurrency=1); step output "
    "checkpointed; no audit chain",
    "raw_insert": "ceiling: the same event rows inserted in batches; no dispatch at all",
    "floor": "ceiling: the rows the engine's guarantees write, in the commits per-key order "
    "allows, by psycopg alone",
}


def subject_of(job: int, subjects: int) -> str:
    return f"subject-{job % subjects}"


def _prepare(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RESULTS_DDL)


def _results(url: str) -> tuple[int, int]:
    """Rows written and per-key order violations (a job written after a later one of its key)."""
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM bench_results").fetchone()
        late = conn.execute(
            "SELECT count(*) FROM (SELECT job, lag(job) OVER (PARTITION BY subject ORDER BY id) "
            "AS prev FROM bench_results) t WHERE prev > job"
        ).fetchone()
    assert count is not None and late is not None
    return int(count[0]), int(late[0])


def _figures(url: str, n: int, start: float, enqueued: float, done: float) -> dict[str, Any]:
    written, late = _results(url)
    if written != n:
        raise RuntimeError(f"{written} result rows of {n} jobs")
    return {
        "jobs": n,
        "enqueue_per_s": n / (enqueued - start),
        "process_per_s": n / (done - enqueued),
        "end_to_end_per_s": n / (done - start),
        "order_violations": late,
    }


async def _wait_for_rows(url: str, n: int, within: float) -> None:
    """Until all ``n`` result rows are committed (peers that run until stopped)."""
    deadline = time.perf_counter() + within
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while time.perf_counter() < deadline:
            row = await (await conn.execute("SELECT count(*) FROM bench_results")).fetchone()
            if row is not None and row[0] >= n:
                return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"not all {n} jobs done within {within} s")


def run_procrastinate(url: str, n: int, subjects: int, timeout: float) -> dict[str, Any]:
    """procrastinate 3: one job per event deferred with ``lock=<subject>`` (its way to run one
    key's jobs one at a time, in order), its table ANALYZEd after deferring, then a worker with
    LISTEN/NOTIFY on (the default) and concurrency 10 for async jobs. A job freed by the end of
    another with the same lock sends no notification, so the worker also polls every 0.1 s
    instead of its default 5 s: in doubt the peer gets the faster setting."""
    import procrastinate
    from psycopg_pool import AsyncConnectionPool

    _prepare(url)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    pool = AsyncConnectionPool(url, min_size=2, max_size=10, open=False)

    @app.task(name="bench_job", queue="bench")
    async def bench_job(job: int, subject: str) -> None:
        async with pool.connection() as conn:
            await conn.execute(INSERT_RESULT, (job, subject))

    async def main() -> tuple[float, float, float]:
        await pool.open()
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            per_subject: dict[str, list[dict[str, Any]]] = {}
            for i in range(n):
                s = subject_of(i, subjects)
                per_subject.setdefault(s, []).append({"job": i, "subject": s})
            start = time.perf_counter()
            for s, jobs in per_subject.items():
                for i in range(0, len(jobs), BATCH):
                    await bench_job.configure(lock=s).batch_defer_async(*jobs[i : i + BATCH])
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute("ANALYZE procrastinate_jobs")
            enqueued = time.perf_counter()
            worker = asyncio.ensure_future(
                app.run_worker_async(
                    queues=["bench"],
                    concurrency=10,
                    fetch_job_polling_interval=0.1,
                    install_signal_handlers=False,
                )
            )
            try:
                await _wait_for_rows(url, n, timeout)
            finally:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            done = time.perf_counter()
        await pool.close()
        return start, enqueued, done

    return _figures(url, n, *asyncio.run(main()))


def run_pgqueuer(url: str, n: int, subjects: int, timeout: float) -> dict[str, Any]:
    """pgqueuer: schema from ``Queries.install()`` (durable tables, its default), jobs enqueued
    in batches, one QueueManager in drain mode (it stops when the queue is empty) with
    ``batch_size=25``, its tuning guide's setting for short-lived jobs (the default is 10)."""
    from pgqueuer import Job, Queries, QueueManager
    from pgqueuer.db import PsycopgDriver
    from pgqueuer.types import QueueExecutionMode
    from psycopg_pool import AsyncConnectionPool

    _prepare(url)
    pool = AsyncConnectionPool(url, min_size=2, max_size=10, open=False)

    async def main() -> tuple[float, float, float]:
        await pool.open()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            queries = Queries(PsycopgDriver(conn))
            await queries.install()
            manager = QueueManager(queries)

            @manager.entrypoint("bench_job")
            async def bench_job(job: Job) -> None:
                number, subject = (job.payload or b"").decode().split(" ", 1)
                async with pool.connection() as c:
                    await c.execute(INSERT_RESULT, (int(number), subject))

            start = time.perf_counter()
            for i in range(0, n, BATCH):
                jobs = range(i, min(n, i + BATCH))
                await queries.enqueue(
                    ["bench_job"] * len(jobs),
                    [f"{j} {subject_of(j, subjects)}".encode() for j in jobs],
                    [0] * len(jobs),
                )
            enqueued = time.perf_counter()
            await asyncio.wait_for(
                manager.run(batch_size=PGQUEUER_BATCH, mode=QueueExecutionMode.drain), timeout
            )
            await _wait_for_rows(url, n, timeout)
            done = time.perf_counter()
        await pool.close()
        return start, enqueued, done

    return _figures(url, n, *asyncio.run(main()))


def run_dbos(url: str, n: int, subjects: int, timeout: float, polling: float) -> dict[str, Any]:
    """DBOS 3: a workflow per job whose one step inserts the result row, enqueued on a
    partitioned queue keyed by subject with ``partition_concurrency=1`` (one workflow of a key
    at a time, first in first out); DBOS's system tables in the same database.

    Jobs are enqueued one call each (``Queue.enqueue``, the documented way), ten at a time from
    threads as concurrent producers would, each ten of different keys so a key's jobs are still
    enqueued in order. Enqueueing a batch in one transaction
    (``DBOSClient.enqueue_in_transaction``) gave its rows equal timestamps and ran about a third
    of them out of key order in a trial here.
    """
    from dbos import DBOS, SetEnqueueOptions
    from psycopg_pool import ConnectionPool

    _prepare(url)
    pool = ConnectionPool(url, min_size=2, max_size=10, open=True)
    system_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    DBOS(config={"name": "q2c_bench", "system_database_url": system_url})

    @DBOS.step()
    def record_result(job: int, subject: str) -> None:
        with pool.connection() as conn:
            conn.execute(INSERT_RESULT, (job, subject))

    @DBOS.workflow(name="bench_job")
    def bench_job(job: int, subject: str) -> None:
        record_result(job, subject)

    DBOS.launch()
    try:
        queue = DBOS.register_queue("bench", partition_concurrency=1, polling_interval_sec=polling)

        def enqueue(i: int) -> None:
            s = subject_of(i, subjects)
            with SetEnqueueOptions(queue_partition_key=s):
                queue.enqueue(bench_job, i, s)

        window = min(DBOS_ENQUEUERS, subjects)  # consecutive jobs: distinct keys
        start = time.perf_counter()
        with ThreadPoolExecutor(window) as enqueuers:
            for first in range(0, n, window):
                list(enqueuers.map(enqueue, range(first, min(n, first + window))))
        enqueued = time.perf_counter()
        asyncio.run(_wait_for_rows(url, n, timeout))
        done = time.perf_counter()
    finally:
        DBOS.destroy(destroy_registry=True)
        pool.close()
    return _figures(url, n, start, enqueued, done)


# -- the ceiling: the engine's own event rows, inserted straight into its table -------------------
COLUMNS = (
    "event_id, source, type, subject, time, correlation_id, causation_id, sequence, "
    "schema_version, data, recorded_at"
)


def event_rows(evs: list[Event]) -> list[tuple[Any, ...]]:
    from quote2cash.engine.events import encode_data

    now = datetime.now(UTC)
    return [
        (
            e.id,
            e.source,
            e.type,
            e.subject,
            e.time,
            e.correlation_id,
            None,
            i + 1,
            1,
            encode_data(e.data),
            now,
        )
        for i, e in enumerate(evs)
    ]


def raw_insert(url: str, evs: list[Event]) -> dict[str, Any]:
    """The same rows in batches of 1,000, one commit each: SQLite ``executemany`` (WAL,
    synchronous FULL), PostgreSQL ``COPY``. No dispatch: what the store's disk and indexes allow."""
    from quote2cash.engine.runtime import Runtime

    Runtime.open(url).close()
    rows = event_rows(evs)
    insert = _raw_sqlite if url.startswith("sqlite") else _raw_postgres
    start = time.perf_counter()
    insert(url, rows)
    return {"rows": len(rows), "rows_per_s": len(rows) / (time.perf_counter() - start)}


def _sqlite_connect(url: str) -> sqlite3.Connection:
    """Python's ``sqlite3`` on the store, autocommit, with the engine's pragmas (WAL, FULL)."""
    conn = sqlite3.connect(Path(url.removeprefix("sqlite:///")), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _raw_sqlite(url: str, rows: list[tuple[Any, ...]]) -> None:
    conn = _sqlite_connect(url)
    sql = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    rows = [(*r[:4], _stamp(r[4]), *r[5:10], _stamp(r[10])) for r in rows]
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[i : i + BATCH])
        conn.execute("COMMIT")
    conn.close()


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _raw_postgres(url: str, rows: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(url) as conn:
        for i in range(0, len(rows), BATCH):
            with conn.cursor() as cur, cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                for row in rows[i : i + BATCH]:
                    copy.write_row(row)
            conn.commit()


def floor_rows(url: str, evs: list[Event], steps: int) -> dict[str, Any]:
    """The rows the engine's guarantees write for these events, in the transactions its per-key
    order allows, written by the database driver alone (psycopg, or Python's ``sqlite3`` with
    the engine's pragmas: WAL, synchronous FULL): nothing of the engine runs.

    Append, per 1,000 events: the subjects' counters (one upsert), the event rows and their
    dispatch rows (``event_state``), one commit (PostgreSQL: two binary COPYs; SQLite:
    ``executemany``). Dispatch: a subject's next step can be recorded only once its previous one
    is committed (a step returns once its record is durable, and events of one subject run in
    order), so there are ``steps`` x (events per subject) rounds, each one transaction: the chain
    head locked, the round's step rows and audit entries written, the head moved, committed. Then
    every event is marked done and its subject's counter moved, one commit. Digests and keys are
    made before the clock starts.

    Left out (so this is a floor on the engine's cost, a ceiling on its rate): claims and leases,
    loading the events, the handlers and the steps' gates, signing the audit entries."""
    from quote2cash.engine.runtime import Runtime

    Runtime.open(url).close()
    plan = _FloorPlan(evs, steps)
    write = _floor_sqlite if url.startswith("sqlite") else _floor_postgres
    start, appended, done, written = write(url, plan)
    n = len(evs)
    if written != (n * steps, n * steps, n, 0):
        raise RuntimeError(f"floor wrote (steps, audit, done, pending) {written} for {n}x{steps}")
    return {
        "events": n,
        "steps_per_event": steps,
        "rounds": len(plan.rounds),
        "append_per_s": n / (appended - start),
        "end_to_end_per_s": n / (done - start),
    }


class _FloorPlan:
    """What the floor writes, made before its clock starts: each event's place in its subject,
    the commit rounds (per round, indexes into the events), the rows' values."""

    EVENT_COLUMNS = (
        "pos, event_id, source, type, subject, time, correlation_id, sequence, data, recorded_at"
    )
    STEP_COLUMNS = "event_pos, name, idempotency_key, system, result, completed_at"
    AUDIT_COLUMNS = (
        "chain, seq, at, actor, action, entity, correlation_id, details, prev_hash, hash, key_id"
    )
    CHAIN = "floor"
    DIGEST = "0" * 64
    COUNTS = (
        "SELECT (SELECT count(*) FROM steps), (SELECT count(*) FROM audit_log), "
        "(SELECT count(*) FROM event_state WHERE status = 'done'), "
        "(SELECT coalesce(sum(pending), 0) FROM subjects)"
    )

    def __init__(self, evs: list[Event], steps: int) -> None:
        from quote2cash.engine.events import encode_data

        self.evs = evs
        self.steps = steps
        self.now = datetime.now(UTC)
        self.order: dict[str, int] = {}  # events per subject
        self.sequence: list[int] = []  # each event's place in its subject
        self.rounds: list[list[int]] = []
        for i, e in enumerate(evs):
            depth = self.order.get(e.subject, 0)
            self.order[e.subject] = depth + 1
            self.sequence.append(depth + 1)
            for step in range(steps):
                r = depth * steps + step
                while len(self.rounds) <= r:
                    self.rounds.append([])
                self.rounds[r].append(i)
        self.data = [encode_data(e.data) for e in evs]
        self.details = [
            f'{{"event_id":"{e.id}","idempotency_key":"{e.id}:{k}","step":"billing.record_{k}",'
            f'"system":"billing","type":"{e.type}"}}'
            for e in evs
            for k in range(steps)
        ]

    def batches(self) -> list[tuple[int, list[Event], list[tuple[str, int]]]]:
        """Append batches: (offset, events, sorted (subject, count))."""
        out = []
        for b in range(0, len(self.evs), BATCH):
            batch = self.evs[b : b + BATCH]
            counts: dict[str, int] = {}
            for e in batch:
                counts[e.subject] = counts.get(e.subject, 0) + 1
            out.append((b, batch, sorted(counts.items())))
        return out

    def event_row(self, pos: int, i: int) -> tuple[Any, ...]:
        e = self.evs[i]
        return (pos, e.id, e.source, e.type, e.subject, e.time, e.correlation_id,
                self.sequence[i], self.data[i], self.now)  # fmt: skip

    def step_row(self, pos: int, i: int, r: int) -> tuple[Any, ...]:
        k = r % self.steps
        return (pos, f"billing.record_{k}", f"{self.evs[i].id}:{k}", "billing", "ok", self.now)

    def audit_row(self, seq: int, i: int, r: int) -> tuple[Any, ...]:
        e = self.evs[i]
        details = self.details[i * self.steps + r % self.steps]
        return (self.CHAIN, seq, self.now, "worker", "step.completed", e.subject,
                e.correlation_id, details, self.DIGEST, self.DIGEST, "k")  # fmt: skip


Timed = tuple[float, float, float, tuple[Any, ...]]
"""A floor writer's clock readings (start, appended, done) and its ``_FloorPlan.COUNTS`` row."""


def _floor_postgres(url: str, plan: _FloorPlan) -> Timed:
    from quote2cash.store.bulk import column_types

    types = {
        "events": column_types("events", plan.EVENT_COLUMNS),
        "event_state": column_types("event_state", "pos, subject"),
        "steps": column_types("steps", plan.STEP_COLUMNS),
        "audit_log": column_types("audit_log", plan.AUDIT_COLUMNS),
    }
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO audit_head (chain, seq, hash) VALUES (%s, 0, %s)",
            (plan.CHAIN, plan.DIGEST),
        )
        conn.commit()
        start = time.perf_counter()
        positions: list[int] = []
        for b, batch, ordered in plan.batches():
            conn.execute(
                "INSERT INTO subjects (subject, last_sequence, pending) "
                "SELECT s, n, n FROM unnest(%s::text[], %s::bigint[]) AS t(s, n) "
                "ON CONFLICT (subject) DO UPDATE SET last_sequence = subjects.last_sequence + "
                "excluded.last_sequence, pending = subjects.pending + excluded.pending",
                ([s for s, _ in ordered], [n for _, n in ordered]),
            )
            got = conn.execute(
                "SELECT nextval(pg_get_serial_sequence('events', 'pos')) "
                "FROM generate_series(1, %s)",
                (len(batch),),
            ).fetchall()
            pos = [p for (p,) in got]
            positions += pos
            with conn.cursor() as cur:
                events = f"COPY events ({plan.EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                with cur.copy(events) as cp:
                    cp.set_types(types["events"])
                    for j, p in enumerate(pos):
                        cp.write_row(plan.event_row(p, b + j))
                with cur.copy("COPY event_state (pos, subject) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(types["event_state"])
                    for p, e in zip(pos, batch, strict=True):
                        cp.write_row((p, e.subject))
            conn.commit()
        appended = time.perf_counter()
        seq = 0
        for r, members in enumerate(plan.rounds):
            with conn.cursor() as cur:
                cur.execute("SELECT seq FROM audit_head WHERE chain = %s FOR UPDATE", (plan.CHAIN,))
                steps = f"COPY steps ({plan.STEP_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                with cur.copy(steps) as cp:
                    cp.set_types(types["steps"])
                    for i in members:
                        cp.write_row(plan.step_row(positions[i], i, r))
                audit = f"COPY audit_log ({plan.AUDIT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                with cur.copy(audit) as cp:
                    cp.set_types(types["audit_log"])
                    for i in members:
                        seq += 1
                        cp.write_row(plan.audit_row(seq, i, r))
                cur.execute(
                    "UPDATE audit_head SET seq = %s, hash = %s WHERE chain = %s",
                    (seq, plan.DIGEST, plan.CHAIN),
                )
            conn.commit()
        conn.execute(
            "UPDATE event_state SET status = 'done', processed_at = %s WHERE pos = ANY(%s)",
            (plan.now, positions),
        )
        conn.execute(
            "UPDATE subjects AS s SET pending = s.pending - v.n, lease_owner = NULL, "
            "lease_until = NULL FROM unnest(%s::text[], %s::bigint[]) AS v(subject, n) "
            "WHERE s.subject = v.subject",
            (list(plan.order), list(plan.order.values())),
        )
        conn.commit()
        done = time.perf_counter()
        written = tuple(conn.execute(plan.COUNTS).fetchone() or ())
    return start, appended, done, written


def _floor_sqlite(url: str, plan: _FloorPlan) -> Timed:
    conn = _sqlite_connect(url)
    conn.execute(
        "INSERT INTO audit_head (chain, seq, hash) VALUES (?, 0, ?)", (plan.CHAIN, plan.DIGEST)
    )
    marks = ", ".join("?" * 10)
    insert_event = f"INSERT INTO events ({plan.EVENT_COLUMNS}) VALUES ({marks})"
    insert_step = f"INSERT INTO steps ({plan.STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    insert_audit = f"INSERT INTO audit_log ({plan.AUDIT_COLUMNS}) VALUES ({', '.join('?' * 11)})"
    stamp = _stamp(plan.now)

    def stamped(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_stamp(v) if isinstance(v, datetime) else v for v in row)

    event_rows = [stamped(plan.event_row(i + 1, i)) for i in range(len(plan.evs))]
    start = time.perf_counter()
    for b, batch, ordered in plan.batches():
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO subjects (subject, last_sequence, pending) VALUES (?, ?, ?) "
            "ON CONFLICT (subject) DO UPDATE SET last_sequence = last_sequence + "
            "excluded.last_sequence, pending = pending + excluded.pending",
            [(s, n, n) for s, n in ordered],
        )
        conn.executemany(insert_event, event_rows[b : b + len(batch)])
        conn.executemany(
            "INSERT INTO event_state (pos, subject) VALUES (?, ?)",
            [(b + j + 1, e.subject) for j, e in enumerate(batch)],
        )
        conn.execute("COMMIT")
    appended = time.perf_counter()
    seq = 0
    for r, members in enumerate(plan.rounds):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT seq FROM audit_head WHERE chain = ?", (plan.CHAIN,)).fetchone()
        conn.executemany(insert_step, [stamped(plan.step_row(i + 1, i, r)) for i in members])
        rows = [stamped(plan.audit_row(seq + k + 1, i, r)) for k, i in enumerate(members)]
        seq += len(members)
        conn.executemany(insert_audit, rows)
        conn.execute(
            "UPDATE audit_head SET seq = ?, hash = ? WHERE chain = ?",
            (seq, plan.DIGEST, plan.CHAIN),
        )
        conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "UPDATE event_state SET status = 'done', processed_at = ? WHERE pos = ?",
        [(stamp, i + 1) for i in range(len(plan.evs))],
    )
    conn.executemany(
        "UPDATE subjects SET pending = pending - ?, lease_owner = NULL, lease_until = NULL "
        "WHERE subject = ?",
        [(n, s) for s, n in plan.order.items()],
    )
    conn.execute("COMMIT")
    done = time.perf_counter()
    written = tuple(conn.execute(plan.COUNTS).fetchone() or ())
    conn.close()
    return start, appended, done, written


def run_peer(name: str, url: str, n: int, subjects: int, **options: Any) -> dict[str, Any]:
    """Dispatch by peer name (the child process's entry point)."""
    timeout = float(options.get("timeout", 600))
    if name == "procrastinate_locked":
        return run_procrastinate(url, n, subjects, timeout)
    if name == "pgqueuer":
        return run_pgqueuer(url, n, subjects, timeout)
    if name == "dbos":
        return run_dbos(url, n, subjects, timeout, float(options.get("dbos_polling", 1.0)))
    raise ValueError(f"unknown peer {name!r}")
