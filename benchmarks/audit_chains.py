"""Audit writers on one chain against writers on a chain each (partitioned, anchored).

W threads each commit transactions carrying E signed entries: first all on "main" (every writer
locks the one head row, as before chains), then each on its own ``worker:<n>`` chain, anchored
into "main" and checkpointed at the end, then verified. The ratio is partitioned / shared in the
same run. Last line: one JSON object of the figures.

    python benchmarks/audit_chains.py --quick                          # SQLite, under a minute
    python benchmarks/audit_chains.py --db postgresql://postgres@127.0.0.1/test --quick
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("Q2C_AUDIT_KEY", "benchmark-audit-key-not-secret")

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from quote2cash.engine.audit import MAIN_CHAIN, AuditEntry, append_audit, worker_chain
from quote2cash.engine.checkpoints import checkpoint_now, verify_store
from quote2cash.engine.runtime import Runtime


def commits_per_s(rt: Runtime, writers: int, commits: int, entries: int, shared: bool) -> float:
    """Every writer commits ``commits`` transactions of ``entries`` entries; commits per second."""
    start = threading.Barrier(writers + 1)

    def write(n: int) -> None:
        chain = MAIN_CHAIN if shared else worker_chain(f"bench-{n}")
        batch = [
            AuditEntry("engine", "step.completed", f"e{n}-{i}", f"c{n}") for i in range(entries)
        ]
        start.wait()
        for _ in range(commits):
            with rt.engine.begin() as conn:
                append_audit(conn, batch, rt.clock.now(), chain=chain)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return round(writers * commits / (time.perf_counter() - began), 1)


def _own_pg_database(url: str) -> tuple[str, str]:
    """A fresh database beside ``url``'s (dropped at the end): figures from an empty log."""
    name = f"q2c_bench_chains_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False), name


def _drop_pg_database(url: str, name: str) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default=None, help="PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--commits", type=int, default=500, help="per writer")
    parser.add_argument("--entries", type=int, default=1, help="signed entries per commit")
    parser.add_argument("--quick", action="store_true", help="150 commits per writer")
    args = parser.parse_args()
    commits = 150 if args.quick else args.commits
    folder = Path(tempfile.mkdtemp(prefix="q2c-audit-chains-"))
    os.environ["Q2C_AUDIT_CHECKPOINT_FILE"] = str(folder / "cp.jsonl")
    dropped: tuple[str, str] | None = None
    if args.db:
        url, name = _own_pg_database(args.db)
        dropped = (args.db, name)
    else:
        url = f"sqlite:///{folder / 'q2c.sqlite'}"
    rt = Runtime.open(url, sqlite_synchronous="NORMAL")
    try:
        figures: dict[str, object] = {
            "store": rt.engine.dialect.name,
            "writers": args.writers,
            "entries_per_commit": args.entries,
        }
        shared = commits_per_s(rt, args.writers, commits, args.entries, shared=True)
        partitioned = commits_per_s(rt, args.writers, commits, args.entries, shared=False)
        figures["shared_chain_commits_per_s"] = shared
        figures["chain_per_writer_commits_per_s"] = partitioned
        figures["ratio_partitioned_vs_shared"] = round(partitioned / shared, 2)
        began = time.perf_counter()
        checkpoint_now(rt)  # anchors the writers' chains, then signs main
        figures["anchor_and_checkpoint_ms"] = round((time.perf_counter() - began) * 1000, 1)
        began = time.perf_counter()
        result = verify_store(rt)
        figures["verify_entries"] = result.checked
        figures["verify_us_per_entry"] = round(
            (time.perf_counter() - began) * 1e6 / max(result.checked, 1), 1
        )
        figures["verify_ok"] = result.ok
        figures["verify_chains"] = len(result.chains)
    finally:
        rt.close()
        if dropped:
            _drop_pg_database(*dropped)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
