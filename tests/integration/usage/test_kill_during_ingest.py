"""kill -9 during ingest loses and duplicates nothing: a real subprocess ingests a file in many
batches and is killed at random points; ingesting the same file again completes it, and the
ledger then holds every record exactly once and the aggregates add up to the file."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import func, select

from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import usage_batches
from quote2cash.usage.ledger import SqlUsageLedger
from support.usage_terms import log_subscription

RECORDS = 6000
CHUNK = 300
INGEST = """
import sys
from pathlib import Path
from quote2cash.engine.runtime import Runtime
from quote2cash.usage.intake import UsageIntake
rt = Runtime.open(sys.argv[1], initialise=False)
intake = UsageIntake(rt.engine, Path(sys.argv[2]), chunk_rows=int(sys.argv[4]))
receipts = intake.ingest_file(Path(sys.argv[3]), source="files", actor="killer")
print(sum(r.accepted for r in receipts), sum(r.duplicate for r in receipts))
"""


def _file(path: Path) -> Decimal:
    total = Decimal(0)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "subscription", "meter", "quantity", "timestamp"])
        for i in range(RECORDS):
            quantity = Decimal(i % 97) / 4
            total += quantity
            writer.writerow([f"k{i}", "C-1", "api_calls", str(quantity), "2026-03-20T10:00:00Z"])
    return total


def _run(url: str, folder: Path, path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", INGEST, url, str(folder), str(path), str(CHUNK)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_kill_9_at_random_points_then_reingest_completes_exactly_once(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    gid = log_subscription(runtime)
    path = tmp_path / "usage.csv"
    expected = _file(path)
    folder = tmp_path / "usage"
    rng = random.Random(int(os.environ.get("Q2C_KILL_SEED", "16")))
    kills = 0
    for _ in range(4):
        proc = _run(db_url, folder, path)
        time.sleep(rng.uniform(0.8, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
    done = _run(db_url, folder, path)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err[-2000:]
    accepted_last, duplicate_last = map(int, out.split())
    assert accepted_last + duplicate_last == RECORDS
    assert kills >= 1, "no kill landed during the ingest: the test proved nothing"

    with runtime.engine.connect() as conn:
        accepted_total = conn.execute(select(func.sum(usage_batches.c.accepted))).scalar_one()
        files = [
            str(folder / "ledger" / f)
            for f in conn.execute(
                select(usage_batches.c.ledger_file).where(usage_batches.c.ledger_file.is_not(None))
            ).scalars()
        ]
    assert accepted_total == RECORDS
    ids, distinct = duckdb.sql(
        f"SELECT count(*), count(DISTINCT record_id) FROM read_parquet({files!r})"
    ).fetchall()[0]
    assert ids == distinct == RECORDS
    ledger = SqlUsageLedger(runtime.engine, folder)
    [agg] = {a.aggregate_id: a for a in ledger.pending_aggregates()}.values()
    assert agg.subscription == gid
    assert (agg.quantity, agg.record_count) == (expected, RECORDS)
    assert sum(r.quantity for r in ledger.records_of(agg.aggregate_id)) == expected


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite only: the subprocess and the test share the file (PostgreSQL runs the same
    code path; its commit is as atomic)."""
    return f"sqlite:///{tmp_path / 'q2c.sqlite'}"
