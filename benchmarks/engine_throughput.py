"""Engine throughput: events through the durable engine vs the raw store and vs procrastinate.

Runs N events across S subjects with no-op handlers on SQLite and on PostgreSQL, and in the
same run measures (a) the raw ceiling: the same rows batch-inserted into the same store, and
(b) procrastinate on the same PostgreSQL doing the same work with one lock per subject (its way
to keep per-key order). Prints ratios; the last line is one JSON object of the figures.

    python benchmarks/engine_throughput.py            # 100,000 events, 1,000 subjects
    python benchmarks/engine_throughput.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, encode_data, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker

PG_ADMIN = os.environ.get("Q2C_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
APPEND_BATCH = 1000


def make_events(n: int, subjects: int) -> list[Event]:
    return [
        new_event("bench.item.changed", f"subject-{i % subjects}", {"n": i, "amount": "12.50"})
        for i in range(n)
    ]


def noop_registry() -> Registry:
    registry = Registry()

    @registry.on("bench.item.changed")
    async def handle(ctx: HandlerContext, event: Event) -> None:
        return None

    return registry


def pg_database() -> tuple[str, Callable[[], None]]:
    name = f"q2c_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, drop


def run_engine(url: str, evs: list[Event], batch: int, subjects_per_batch: int) -> dict[str, float]:
    """Three runs on fresh stores: append only, process only, and both at once.

    The last is the production shape: an intake thread appends batches (each committed before
    it returns) while a worker processes; its rate is events appended *and* processed per
    second of wall time, from the first append to the last completion.
    """
    n = len(evs)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = _fresh(url, tmp, "a")
        worker = Worker(runtime, noop_registry(), batch_size=batch, max_subjects=subjects_per_batch)
        start = time.perf_counter()
        for i in range(0, n, APPEND_BATCH):
            runtime.log.append_many(evs[i : i + APPEND_BATCH])
        appended = time.perf_counter()
        report = asyncio.run(worker.drain())
        done = time.perf_counter()
        runtime.close()
        assert report.processed == n, f"processed {report.processed} of {n}"

        runtime = _fresh(url, tmp, "b")
        worker = Worker(runtime, noop_registry(), batch_size=batch, max_subjects=subjects_per_batch)
        fresh = [new_event(e.type, e.subject, e.data) for e in evs]
        start_both = time.perf_counter()
        intake = threading.Thread(target=_append_all, args=(runtime, fresh))
        intake.start()
        processed = 0

        async def work() -> int:
            count = 0
            while count < n:
                report = await worker.run_once()
                count += report.processed
                if report.idle:
                    await asyncio.sleep(0.001)
            return count

        processed = asyncio.run(work())
        both = time.perf_counter()
        intake.join()
        runtime.close()
        assert processed == n
    return {
        "append_per_s": n / (appended - start),
        "process_per_s": n / (done - appended),
        "sequential_per_s": n / (done - start),
        "end_to_end_per_s": n / (both - start_both),
    }


def _fresh(url: str, tmp: str, tag: str) -> Runtime:
    if url.startswith("sqlite"):
        return Runtime.open(f"sqlite:///{tmp}/engine-{tag}.sqlite")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return Runtime.open(url)


def _append_all(runtime: Runtime, evs: list[Event]) -> None:
    for i in range(0, len(evs), APPEND_BATCH):
        runtime.log.append_many(evs[i : i + APPEND_BATCH])


def raw_rows(evs: list[Event]) -> list[tuple[Any, ...]]:
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


COLUMNS = (
    "event_id, source, type, subject, time, correlation_id, causation_id, sequence, "
    "schema_version, data, recorded_at"
)


def raw_sqlite(path: Path, evs: list[Event]) -> float:
    """The ceiling: the same rows, executemany in the same batches, straight into events."""
    Runtime.open(f"sqlite:///{path}").close()
    rows = [
        (
            *r[:4],
            r[4].strftime("%Y-%m-%d %H:%M:%S.%f"),
            *r[5:10],
            r[10].strftime("%Y-%m-%d %H:%M:%S.%f"),
        )
        for r in raw_rows(evs)
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    sql = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    start = time.perf_counter()
    for i in range(0, len(rows), APPEND_BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[i : i + APPEND_BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def raw_postgres(url: str, evs: list[Event]) -> float:
    """The ceiling: COPY of the same rows in the same batches, one commit each."""
    Runtime.open(url).close()
    rows = raw_rows(evs)
    start = time.perf_counter()
    with psycopg.connect(url) as conn:
        for i in range(0, len(rows), APPEND_BATCH):
            with conn.cursor() as cur, cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                for row in rows[i : i + APPEND_BATCH]:
                    copy.write_row(row)
            conn.commit()
    return len(rows) / (time.perf_counter() - start)


def run_procrastinate(url: str, n: int, subjects: int, concurrency: int, lock: bool) -> float:
    """procrastinate doing the same work: one job per event, one lock per subject for order
    (``lock=False``: the same jobs without locks, i.e. without the ordering guarantee)."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    done = {"n": 0}

    @app.task(name="bench_item_changed", queue="bench")
    async def bench_item_changed(n: int, amount: str) -> None:
        done["n"] += 1

    async def main() -> float:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            per_subject: dict[int, list[dict[str, Any]]] = {}
            for i in range(n):
                per_subject.setdefault(i % subjects, []).append({"n": i, "amount": "12.50"})
            start = time.perf_counter()
            for subject, jobs in per_subject.items():
                deferrer = bench_item_changed.configure(lock=f"subject-{subject}" if lock else None)
                await deferrer.batch_defer_async(*jobs)
            while done["n"] < n:  # wait=False returns when no job is free right now
                await app.run_worker_async(
                    queues=["bench"],
                    concurrency=concurrency,
                    wait=False,
                    install_signal_handlers=False,
                    fetch_job_polling_interval=0.01,
                    delete_jobs="never",
                )
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    assert done["n"] == n, f"procrastinate ran {done['n']} of {n} jobs"
    return n / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--events", type=int)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--procrastinate-jobs", type=int)
    parser.add_argument("--batch", type=int, default=5000, help="events per worker batch")
    parser.add_argument("--subjects-per-batch", type=int, default=1000)
    args = parser.parse_args(argv)
    n = args.events or (20_000 if args.quick else 100_000)
    n_proc = args.procrastinate_jobs or (500 if args.quick else 3_000)
    evs = make_events(n, args.subjects)
    out: dict[str, Any] = {"events": n, "subjects": args.subjects, "procrastinate_jobs": n_proc}
    print(f"{n:,} events across {args.subjects:,} subjects, no-op handlers", flush=True)

    sq = run_engine("sqlite://", evs, args.batch, args.subjects_per_batch)
    with tempfile.TemporaryDirectory() as tmp:
        raw_sq = raw_sqlite(Path(tmp) / "raw.sqlite", evs)
    print(
        f"sqlite   engine: append {sq['append_per_s']:>9,.0f}/s  process "
        f"{sq['process_per_s']:>9,.0f}/s  sequential {sq['sequential_per_s']:>9,.0f}/s  "
        f"concurrent {sq['end_to_end_per_s']:>9,.0f}/s  "
        f"| raw insert {raw_sq:,.0f} rows/s",
        flush=True,
    )

    url, drop = pg_database()
    try:
        pg = run_engine(url, evs, args.batch, args.subjects_per_batch)
    finally:
        drop()
    url, drop = pg_database()
    try:
        raw_pg = raw_postgres(url, evs)
    finally:
        drop()
    print(
        f"postgres engine: append {pg['append_per_s']:>9,.0f}/s  process "
        f"{pg['process_per_s']:>9,.0f}/s  sequential {pg['sequential_per_s']:>9,.0f}/s  "
        f"concurrent {pg['end_to_end_per_s']:>9,.0f}/s  "
        f"| raw COPY {raw_pg:,.0f} rows/s",
        flush=True,
    )

    proc_runs = {}
    for lock in (True, False):
        url, drop = pg_database()
        try:
            proc_runs[lock] = run_procrastinate(
                url, n_proc, min(args.subjects, n_proc), concurrency=10, lock=lock
            )
        finally:
            drop()
    proc = proc_runs[True]
    print(
        f"procrastinate, concurrency 10: {proc:,.0f} jobs/s with a lock per subject "
        f"(ordered); {proc_runs[False]:,.0f} jobs/s without locks (no order)",
        flush=True,
    )

    # Headline: events dispatched through the engine (claim, handler, commit) per second; the
    # append rate and the end-to-end rates (append then drain; both at once) are reported too.
    out.update(
        sqlite_events_per_s=round(sq["process_per_s"]),
        sqlite_end_to_end_per_s=round(sq["end_to_end_per_s"]),
        sqlite_append_per_s=round(sq["append_per_s"]),
        sqlite_process_per_s=round(sq["process_per_s"]),
        sqlite_raw_rows_per_s=round(raw_sq),
        postgres_events_per_s=round(pg["process_per_s"]),
        postgres_end_to_end_per_s=round(pg["end_to_end_per_s"]),
        postgres_append_per_s=round(pg["append_per_s"]),
        postgres_process_per_s=round(pg["process_per_s"]),
        postgres_raw_rows_per_s=round(raw_pg),
        procrastinate_jobs_per_s=round(proc),
        procrastinate_unordered_jobs_per_s=round(proc_runs[False]),
        sqlite_sequential_per_s=round(sq["sequential_per_s"]),
        postgres_sequential_per_s=round(pg["sequential_per_s"]),
        ratio_vs_procrastinate=round(pg["sequential_per_s"] / proc, 1),
        ratio_sqlite_vs_raw=round(sq["process_per_s"] / raw_sq, 3),
        ratio_postgres_vs_raw=round(pg["process_per_s"] / raw_pg, 3),
    )
    print(
        f"ratios: postgres engine (append, then process) / procrastinate (defer, then run) = "
        f"{out['ratio_vs_procrastinate']}x; engine dispatch / raw insert: sqlite "
        f"{out['ratio_sqlite_vs_raw']}, postgres {out['ratio_postgres_vs_raw']}"
    )
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
