"""What taking an event in and completing it costs PostgreSQL: N events appended through
``EventLog.append_many`` (batches of 1,000), then marked done a thousand at a time with the
worker's own statement (``dispatch_sql.mark_done``, each batch its own commit), on a fresh
database. Per phase: rows per second, WAL bytes and PostgreSQL CPU microseconds per event (the
last two hardly move with the machine's load). Run it with another checkout's ``src`` first on
``PYTHONPATH`` to compare schemas. The last line is one JSON object.

    python benchmarks/engine_completion.py            # 60,000 events
    python benchmarks/engine_completion.py --quick    # 20,000 events
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from _common import backend_cpu_seconds, pg_database

BATCH = 1000


def wal_position(conn: Any) -> str:
    return str(conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar())


def wal_since(conn: Any, start: str) -> int:
    sql = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)"
    return int(conn.exec_driver_sql(sql, (start,)).scalar())


def measure(n: int) -> dict[str, Any]:
    from engine_history import make_events
    from quote2cash.engine import dispatch_sql
    from quote2cash.engine.runtime import Runtime

    os.environ.setdefault("Q2C_AUDIT_KEY", "engine-benchmark-audit-key-not-secret")
    url, drop = pg_database("q2c_completion")
    try:
        runtime = Runtime.open(url)
        evs = make_events(n, max(1, n // 60))
        out: dict[str, Any] = {"events": n}
        with runtime.engine.connect() as conn:
            start = wal_position(conn)
        cpu, took = backend_cpu_seconds(url), time.perf_counter()
        for i in range(0, n, BATCH):
            runtime.log.append_many(evs[i : i + BATCH])
        took, cpu = time.perf_counter() - took, backend_cpu_seconds(url) - cpu
        with runtime.engine.connect() as conn:
            out["append_per_s"] = round(n / took)
            out["append_wal_bytes_per_event"] = round(wal_since(conn, start) / n)
            out["append_server_cpu_us_per_event"] = round(cpu / n * 1e6, 1)
            positions = [p for (p,) in conn.exec_driver_sql("SELECT pos FROM events ORDER BY pos")]
            start = wal_position(conn)
        now = runtime.clock.now()
        cpu, took = backend_cpu_seconds(url), time.perf_counter()
        for i in range(0, n, BATCH):
            with runtime.engine.begin() as conn:
                dispatch_sql.mark_done(conn, positions[i : i + BATCH], now, True)
        took, cpu = time.perf_counter() - took, backend_cpu_seconds(url) - cpu
        with runtime.engine.connect() as conn:
            out["done_per_s"] = round(n / took)
            out["done_wal_bytes_per_event"] = round(wal_since(conn, start) / n)
            out["done_server_cpu_us_per_event"] = round(cpu / n * 1e6, 1)
            out["events_table_bytes"] = int(
                conn.exec_driver_sql("SELECT pg_total_relation_size('events')").scalar()
            )
        runtime.close()
        return out
    finally:
        drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    parser.add_argument("--events", type=int, help="events to append and complete")
    args = parser.parse_args()
    out = measure(args.events or (20_000 if args.quick else 60_000))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
