"""Audit cost: a signed entry, a checkpoint to a file and to JetStream, and verify per entry.

Decides the checkpoint policy: if a checkpoint costs about as much as a commit, checkpointing
per commit would halve decision throughput, so workers batch (docs/audit.md). Prints one JSON
line of the figures.

    python benchmarks/audit_checkpoint.py                 # SQLite store, file + JetStream
    python benchmarks/audit_checkpoint.py --db postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("Q2C_AUDIT_KEY", "benchmark-audit-key-not-secret")

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.checkpoints import checkpoint_now, run_sync, verify_store
from quote2cash.engine.checkpoints_file import FileCheckpoints
from quote2cash.engine.checkpoints_jetstream import JetStreamCheckpoints
from quote2cash.engine.runtime import Runtime


def per_call_ms(work: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 3)


async def _drop_stream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    await nc.jetstream().delete_stream(stream)
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default=None)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="q2c-audit-bench-"))
    os.environ["Q2C_AUDIT_CHECKPOINT_FILE"] = str(folder / "cp.jsonl")
    url = args.db or f"sqlite:///{folder / 'q2c.sqlite'}"
    rt = Runtime.open(url)
    now = rt.clock.now

    def one_entry_commit() -> None:
        with rt.engine.begin() as conn:
            append_audit(conn, [AuditEntry("bench", "x.done", "e1", "c1", {"n": 1})], now())

    figures: dict[str, object] = {"store": rt.engine.dialect.name}
    figures["commit_with_one_signed_entry_ms"] = per_call_ms(one_entry_commit, 200)
    batch = [AuditEntry("bench", "x.done", f"e{i}", "c1", {"n": i}) for i in range(1000)]
    started = time.perf_counter()
    for _ in range(args.entries // 1000):
        with rt.engine.begin() as conn:
            append_audit(conn, batch, now())
    figures["append_us_per_entry_in_batches_of_1000"] = round(
        (time.perf_counter() - started) * 1e6 / args.entries, 1
    )
    rt.checkpoints = FileCheckpoints(folder / "cp.jsonl")
    figures["checkpoint_file_ms"] = per_call_ms(lambda: checkpoint_now(rt), 100)
    stream = f"Q2C_AUDIT_BENCH_{uuid.uuid4().hex[:8].upper()}"
    try:
        js = JetStreamCheckpoints(args.nats, stream=stream)
        run_sync(js.prepare())
        rt.checkpoints = js
        figures["checkpoint_jetstream_ms"] = per_call_ms(lambda: checkpoint_now(rt), 50)
        run_sync(_drop_stream(args.nats, stream))
    except Exception as exc:
        figures["checkpoint_jetstream_ms"] = f"skipped: {type(exc).__name__}"
    rt.checkpoints = FileCheckpoints(folder / "cp.jsonl")
    started = time.perf_counter()
    result = verify_store(rt)
    figures["verify_entries"] = result.checked
    figures["verify_us_per_entry"] = round(
        (time.perf_counter() - started) * 1e6 / max(result.checked, 1), 1
    )
    figures["verify_ok"] = result.ok
    rt.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
