"""Retention: the store's size per million processed events before and after archiving, the
Parquet archive's size, and archive / restore speed, on SQLite and PostgreSQL.

Each event is processed as the engine leaves it: status done, one recorded step, one audit
entry naming it. 90 % are older than the other-class retention (90 days) and are archived;
the audit log stays (it is never deleted). Sizes: PostgreSQL pg_total_relation_size of the
engine's tables (after VACUUM FULL, i.e. the space the rows take); SQLite the file after
VACUUM. The last line is one JSON object of the figures.

    python benchmarks/retention.py --quick     # 10,000 events per store, under a minute
    python benchmarks/retention.py             # 200,000 events per store
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("Q2C_AUDIT_KEY", "benchmark-audit-key-not-secret")

import psycopg
from sqlalchemy import insert, text, update

from _common import pg_database
from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.retention.archive import run_archive
from quote2cash.retention.policy import RetentionPolicy
from quote2cash.retention.restore import restore_archive
from quote2cash.store.schema import event_state, steps

ENGINE_TABLES = ("events", "steps", "failures", "subjects")
BATCH = 5000


def fill(rt: Runtime, n: int) -> None:
    """``n`` processed events over n/10 subjects, each with one step and one audit entry."""
    now = rt.clock.now()
    for start in range(0, n, BATCH):
        batch = [
            new_event(
                "crm.account.updated",
                f"acct-{i % max(1, n // 10)}",
                {"n": i, "name": "Acme Corp", "amount": "12.50"},
                id=f"ev-{i}",
                time=now - timedelta(days=100 if i % 10 != 9 else 10),  # the newest stays young
            )
            for i in range(start, min(n, start + BATCH))
        ]
        with rt.engine.connect() as conn:
            last = conn.execute(text("SELECT coalesce(max(pos), 0) FROM events")).scalar_one()
        receipts = rt.log.append_many(batch)
        with rt.engine.begin() as conn:
            found = conn.execute(
                text("SELECT event_id, pos FROM events WHERE pos > :p"), {"p": last}
            )
            positions = {event_id: pos for event_id, pos in found}
            conn.execute(
                update(event_state)
                .where(event_state.c.pos > last)
                .values(status="done", processed_at=now)
            )
            conn.execute(text("UPDATE subjects SET pending = 0"))
            conn.execute(
                insert(steps),
                [
                    {
                        "event_pos": positions[r.event_id],
                        "name": "erp.upsert_customer",
                        "idempotency_key": f"{r.event_id}:erp.upsert_customer"[:80],
                        "system": "erp",
                        "result": '{"id":"C-1"}',
                        "completed_at": now,
                    }
                    for r in receipts
                ],
            )
            append_audit(
                conn,
                [
                    AuditEntry(
                        "engine",
                        "step.completed",
                        r.subject,
                        None,
                        {"event_id": r.event_id, "step": "erp.upsert_customer"},
                    )
                    for r in receipts
                ],
                now,
            )


def sizes(rt: Runtime, url: str, path: Path | None) -> dict[str, int]:
    """Bytes the engine's tables and the audit log take (PostgreSQL, after VACUUM FULL), or the
    whole SQLite file after VACUUM; on a connection of its own, the store's pool closed."""
    rt.engine.dispose()
    if path is not None:
        vacuum = sqlite3.connect(path, isolation_level=None)
        vacuum.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        vacuum.execute("VACUUM")
        vacuum.close()
        return {"store": path.stat().st_size}
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        _wait_for_quiet(conn)
        for table in (*ENGINE_TABLES, "audit_log"):
            conn.execute(f"VACUUM {table}")  # dead rows out first, then compact
            conn.execute(f"VACUUM FULL {table}")
            (size,) = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()  # type: ignore[misc]
            out[table] = int(size)
    out["store"] = sum(out.values())
    return out


def _wait_for_quiet(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Wait (up to 60 s) until no other session of this database holds a snapshot (an
    autoanalyze after the bulk delete would keep VACUUM FULL from removing the dead rows)."""
    for _ in range(600):
        (busy,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)"
        ).fetchone()  # type: ignore[misc]
        if not busy:
            return
        time.sleep(0.1)


def measure(url: str, sqlite_file: Path | None, n: int, folder: Path) -> dict[str, float]:
    rt = Runtime.open(url, sqlite_synchronous="NORMAL")
    started = time.perf_counter()
    fill(rt, n)
    fill_s = time.perf_counter() - started
    before = sizes(rt, url, sqlite_file)
    started = time.perf_counter()
    report = run_archive(rt, folder, RetentionPolicy(), limit=n)
    archive_s = time.perf_counter() - started
    after = sizes(rt, url, sqlite_file)
    assert report.file is not None and report.events == n - n // 10, report
    parquet = (folder / report.file).stat().st_size
    started = time.perf_counter()
    restore_archive(rt, folder / report.file)
    restore_s = time.perf_counter() - started
    rt.close()
    per_m = 1_000_000 / n
    figures = {
        "events": n,
        "fill_s": round(fill_s, 1),
        "bytes_per_million_events_before": round(before["store"] * per_m),
        "bytes_per_million_events_after": round(after["store"] * per_m),
        "archived_fraction": round(report.events / n, 2),
        "parquet_bytes_per_million_events": round(parquet * 1_000_000 / report.events),
        "archive_events_per_s": round(report.events / archive_s),
        "delete_transaction_ms_per_10k_events": round(
            report.transaction_seconds * 1000 * 10_000 / report.events
        ),
        "restore_events_per_s": round(report.events / restore_s),
    }
    if "audit_log" in before:
        figures["audit_log_bytes_per_million_events"] = round(before["audit_log"] * per_m)
        figures["engine_tables_bytes_per_million_events_before"] = round(
            sum(before[t] for t in ENGINE_TABLES) * per_m
        )
        figures["engine_tables_bytes_per_million_events_after"] = round(
            sum(after[t] for t in ENGINE_TABLES) * per_m
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    n = args.events or (10_000 if args.quick else 200_000)
    work = Path(tempfile.mkdtemp(prefix="q2c-retention-bench-"))
    os.environ["Q2C_AUDIT_CHECKPOINT_FILE"] = str(work / "cp.jsonl")
    figures: dict[str, object] = {"events_per_store": n}
    try:
        db = work / "q2c.sqlite"
        for k, v in measure(f"sqlite:///{db}", db, n, work / "sqlite-archive").items():
            figures[f"sqlite_{k}"] = v
        print(f"sqlite: {json.dumps({k: v for k, v in figures.items() if 'sqlite' in k})}")
        if not args.no_postgres:
            url, drop = pg_database("q2c_bench_ret")
            try:
                for k, v in measure(url, None, n, work / "pg-archive").items():
                    figures[f"pg_{k}"] = v
            finally:
                drop()
            print(f"postgresql: {json.dumps({k: v for k, v in figures.items() if 'pg_' in k})}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
