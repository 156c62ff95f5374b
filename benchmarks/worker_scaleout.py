"""Throughput of 1, 2 and 4 ``q2c worker`` processes on one PostgreSQL store (issue 17).

Each event runs one recorded step (``support.scaleout_calls``: one INSERT into a stand-in ERP
table, deduped by idempotency key), so a worker's cost per event is a claim share, a load, the
step's call, its group-committed record and the completion. The rate is measured from the first
booking to the last; the events are logged once every process is up. The store is fresh
for each process count.
Also reported: lost and duplicated bookings and per-subject order violations (all 0).

    python benchmarks/worker_scaleout.py [--quick] [--events N] [--subjects S] [--step-ms L]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from _common import PG_ADMIN, SRC, pg_database

TESTS = Path(__file__).parents[1] / "tests"
sys.path[:0] = [str(SRC), str(TESTS)]
os.environ.setdefault("Q2C_AUDIT_KEY", "benchmark-audit-key-not-secret")
os.environ.setdefault(
    "Q2C_AUDIT_CHECKPOINT_FILE", str(Path(tempfile.mkdtemp(prefix="q2c-scaleout-")) / "cp.jsonl")
)


def wait_for_connections(
    conn: psycopg.Connection[Any], processes: int, workers: list[subprocess.Popen[bytes]]
) -> None:
    """Until the store has a session per worker process (each holds one once it runs)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
        if row and row[0] >= processes:
            return
        if any(w.poll() is not None for w in workers):
            raise SystemExit("a worker exited early")
        time.sleep(0.2)
    raise SystemExit("the workers did not connect in 300 s")


def run(
    processes: int, events: int, subjects: int, max_subjects: int, step_ms: float
) -> dict[str, float]:
    """One measured run on a fresh database; returns its figures."""
    from quote2cash.engine.events import new_event
    from quote2cash.engine.runtime import Runtime
    from support.scaleout_calls import BOOKED, create_tables

    url, drop = pg_database("q2c_scaleout")
    try:
        Runtime.open(url).close()
        create_tables(url)
        env = {
            **os.environ,
            "Q2C_DATABASE_URL": url,
            "Q2C_LOG_LEVEL": "WARNING",
            "Q2C_TEST_STEP_SECONDS": str(step_ms / 1000),
            "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        command = [sys.executable, "-m", "quote2cash.cli", "worker"]
        command += ["--handlers", "support.scaleout_calls:registry"]
        command += ["--max-subjects", str(max_subjects)]
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(processes)
        ]
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                # Every process has started and connected before any event is logged.
                wait_for_connections(conn, processes, workers)
                rt = Runtime.open(url, initialise=False)
                rt.log.append_many(
                    [new_event(BOOKED, f"contract:{i % subjects}", {"i": i}) for i in range(events)]
                )
                rt.close()
                started = time.monotonic()
                while time.monotonic() - started < 600:
                    done = conn.execute(
                        "SELECT count(*) FROM event_state WHERE status = 'done'"
                    ).fetchone()
                    if done and done[0] == events:
                        break
                    if any(w.poll() is not None for w in workers):
                        raise SystemExit("a worker exited early")
                    time.sleep(0.1)
                wall = time.monotonic() - started
                first, last, booked, distinct, pids = conn.execute(
                    "SELECT min(at), max(at), count(*), count(DISTINCT (subject, sequence)), "
                    "count(DISTINCT pid) FROM booked"
                ).fetchone()  # type: ignore[misc]
                disorder = conn.execute(
                    "SELECT count(*) FROM (SELECT sequence < lag(sequence) OVER "
                    "(PARTITION BY subject ORDER BY n) AS back FROM booked) b WHERE back"
                ).fetchone()[0]  # type: ignore[index]
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=60)
        span = (last - first).total_seconds()
        return {
            "events_per_s": round(events / span, 1) if span > 0 else 0.0,
            "wall_s": round(wall, 2),
            "workers_that_booked": pids,
            "lost": events - distinct,
            "duplicated": booked - distinct,
            "order_violations": disorder,
        }
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run, under a minute")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--subjects", type=int, default=None)
    parser.add_argument("--max-subjects", type=int, default=100)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument(
        "--step-ms", type=float, default=0.0, help="the ERP call's latency in each step"
    )
    args = parser.parse_args()
    events = args.events or (5000 if args.quick else 50_000)
    subjects = args.subjects or (1000 if args.quick else 10_000)
    figures: dict[str, object] = {
        "events": events,
        "subjects": subjects,
        "max_subjects": args.max_subjects,
        "step_ms": args.step_ms,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "store": PG_ADMIN.rsplit("/", 1)[0].split("@")[-1],
    }
    runs: dict[int, dict[str, float]] = {}
    for n in [int(p) for p in args.processes.split(",")]:
        result = run(n, events, subjects, args.max_subjects, args.step_ms)
        base = runs[min(runs)]["events_per_s"] if runs else result["events_per_s"]
        result["vs_first"] = round(result["events_per_s"] / base, 2) if base else 0.0
        print(f"{n} worker process(es): {json.dumps(result)}", flush=True)
        runs[n] = result
        figures[f"p{n}"] = result
    figures["lost"] = sum(r["lost"] for r in runs.values())
    figures["duplicated"] = sum(r["duplicated"] for r in runs.values())
    figures["order_violations"] = sum(r["order_violations"] for r in runs.values())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
