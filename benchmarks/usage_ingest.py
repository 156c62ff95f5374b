"""Usage intake: records/s for validate + dedup against 100 million records of history, on CSV
and on Parquet, with peak memory; and the same work as a plain per-record Python loop (csv
module, dict lookups, a set of keys) as the baseline ratio, measured in the same run.

History: a key index (usage/keyindex.py) of 100,000,000 accepted records, built once and cached
under the benchmark cache dir (``Q2C_BENCH_CACHE``, default ``~/.cache/q2c-bench``); building it
takes minutes, every later run reuses it. The measured files hold records of 1,000 metered
subscriptions; 1 % repeat a history record (duplicates), 0.5 % have a negative quantity
(quarantined). "validate + dedup" is what intake does before it commits: read the file in
chunks, validate every record against the subscriptions' terms, look every key up in the
history, decide each record's outcome. "end to end" adds the commit (Parquet ledger file, the
receipt, quarantine rows, aggregates, audit entries, events in a SQLite store, the index run).
Each validate + dedup child measures the file twice: the headline is the first pass in a fresh
process (its first-touch costs included); ``warm_*`` is the same file again in that process,
as a long-running intake (``q2c usage watch``, the API) sees its next file.

The baseline loop keeps its history in a Python set of only 1,000,000 keys (100 million would
not fit in memory as Python objects): that flatters the baseline, so the ratio is conservative.

    python benchmarks/usage_ingest.py --quick    # 1,000,000 records per format (history cached)
    python benchmarks/usage_ingest.py            # 5,000,000 records per format
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

os.environ.setdefault("Q2C_AUDIT_KEY", "benchmark-audit-key-not-secret")

# Arrow's allocator as the q2c entry point sets it before pyarrow loads
# (quote2cash.allocator.ALLOCATOR_DEFAULTS; children inherit it)
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")

from _common import child_env, run_child
from quote2cash.usage.duck import connection
from quote2cash.usage.terms import MeteredItem, SubscriptionTerms
from quote2cash.usage.validation import CONTENT_SQL, KEY_SQL

HISTORY = 100_000_000
SUBSCRIPTIONS = 1000
SOURCE = "meter"
START = datetime(2026, 1, 15, tzinfo=UTC)
CLOSED_BEFORE = datetime(2026, 3, 15, tzinfo=UTC)
NOW = datetime(2026, 4, 1, tzinfo=UTC)
TIME = "2026-03-20T10:00:00Z"
CHUNK = 1_000_000


def cache_dir() -> Path:
    root = Path(os.environ.get("Q2C_BENCH_CACHE", Path.home() / ".cache" / "q2c-bench"))
    folder = root / "usage_ingest"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def terms() -> list[SubscriptionTerms]:
    return [
        SubscriptionTerms(
            subscription=f"SUB-{k}",
            references=(f"SUB-{k}", f"C-{k}", f"sub_{k}"),
            customer=f"cus_{k}",
            subject=f"contract:C-{k}",
            items=(MeteredItem("api_calls", "call", ("api_calls", f"price_{k}")),),
            service_start=START,
            service_end=None,
            cycle_anchor=START,
            closed_before=CLOSED_BEFORE,
        )
        for k in range(SUBSCRIPTIONS)
    ]


def _records_sql(ids: str, count: int) -> str:
    """``count`` records (text columns as a file has them), ids ``<prefix><n>`` from ``ids``."""
    return f"""
      SELECT {ids} AS id, 'C-' || (n % {SUBSCRIPTIONS}) AS subscription, 'api_calls' AS meter,
        CAST(n % 100 AS VARCHAR) AS quantity, 'call' AS unit, '{TIME}' AS "timestamp"
      FROM range({count}) r(n)"""


def history_index(size: int) -> Path:
    """The cached key index of ``size`` history records ``h0``.. (built on first use)."""
    from quote2cash.usage.keyindex import KeyIndex

    version = hashlib.sha256((KEY_SQL + CONTENT_SQL).encode()).hexdigest()[:8]
    folder = cache_dir() / f"history-{size}-{version}"
    index = KeyIndex(folder)
    try:
        if index.size == size:
            return folder
        index.reset()
        started = time.perf_counter()
        con = connection()
        try:
            table = con.sql(
                f"""SELECT {KEY_SQL} AS key, {CONTENT_SQL} AS content
                FROM (SELECT *, NULL AS customer, NULL AS properties
                      FROM ({_records_sql("'h' || n", size)})) ORDER BY key""",
                params={"source": SOURCE},
            ).to_arrow_table()
        finally:
            con.close()
        index.add_sorted(
            table.column("key").combine_chunks(), table.column("content").combine_chunks(), 0
        )
        del table
        print(
            f"history index of {size:,} keys built in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        return folder
    finally:
        index.close()


def files(count: int) -> tuple[Path, Path]:
    """CSV and Parquet files of ``count`` records (cached): 1 % history repeats, 0.5 % bad."""
    folder = cache_dir() / f"files-{count}"
    csv_path, parquet_path = folder / "usage.csv", folder / "usage.parquet"
    if csv_path.exists() and parquet_path.exists():
        return csv_path, parquet_path
    folder.mkdir(parents=True, exist_ok=True)
    con = connection()
    try:
        con.sql(
            f"""CREATE TABLE f AS SELECT
                CASE WHEN n % 100 = 7 THEN 'h' || (n * 7919 % {HISTORY}) ELSE 'n' || n END AS id,
                'C-' || (CASE WHEN n % 100 = 7 THEN n * 7919 % {HISTORY} ELSE n END
                  % {SUBSCRIPTIONS}) AS subscription,
                'api_calls' AS meter,
                CASE WHEN n % 200 = 3 THEN '-1'
                     ELSE CAST((CASE WHEN n % 100 = 7 THEN n * 7919 % {HISTORY} ELSE n END) % 100
                          AS VARCHAR) END AS quantity,
                'call' AS unit, '{TIME}' AS "timestamp"
              FROM range({count}) r(n)"""
        )
        con.sql(f"COPY f TO '{csv_path}' (HEADER)")
        con.sql(f"COPY f TO '{parquet_path}' (FORMAT parquet, ROW_GROUP_SIZE 200000)")
    finally:
        con.close()
    return csv_path, parquet_path


# --- measured in child processes (clean peak RSS each) -------------------------------------


def peak_rss_mb() -> int:
    """This process's peak resident set (VmHWM: since its exec, unlike ru_maxrss, which a
    child inherits from the process that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def rss_split_mb() -> dict[str, int]:
    """Resident memory now, split: anonymous (the process's own arrays) and file-backed (the
    memory-mapped key index pages the lookups touched, shared with the page cache)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        for field, name in (("RssAnon:", "rss_anon_mb"), ("RssFile:", "rss_file_mb")):
            if line.startswith(field):
                out[name] = round(int(line.split()[1]) / 1024)
    return out


def child_validate_dedup(path: Path, index_dir: Path) -> dict[str, Any]:
    from quote2cash.usage.keyindex import KeyIndex
    from quote2cash.usage.reading import file_chunks, prefetched
    from quote2cash.usage.validation import check_chunk, reference_tables

    index = KeyIndex(index_dir)
    con = connection()
    passes: list[dict[str, Any]] = []
    for _ in range(2):  # the first in a fresh process (the headline), then the same again
        outcomes: dict[str, int] = {}
        started, cpu = time.perf_counter(), time.process_time()
        reference_tables(con, terms())
        records = 0
        for chunk in prefetched(file_chunks(path, CHUNK)):
            decided = check_chunk(
                con, chunk, source=SOURCE, policy="adjust", now=NOW, lookup=index.lookup
            )
            con.register("decided", decided)
            for outcome, n in con.sql(
                "SELECT outcome, count(*) FROM decided GROUP BY 1"
            ).fetchall():
                outcomes[outcome] = outcomes.get(outcome, 0) + int(n)
            con.unregister("decided")
            records += chunk.num_rows
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        passes.append(
            {
                "records": records,
                "seconds": round(seconds, 3),
                "records_per_s": round(records / seconds),
                "cpu_seconds": round(cpu, 3),
                "records_per_cpu_s": round(records / cpu),
                "outcomes": outcomes,
            }
        )
    first, warm = passes
    assert warm["outcomes"] == first["outcomes"]
    split = rss_split_mb()  # with the index still mapped
    con.close()
    index.close()
    return {
        **first,
        "warm_records_per_s": warm["records_per_s"],
        "warm_records_per_cpu_s": warm["records_per_cpu_s"],
        "peak_rss_mb": peak_rss_mb(),
        **split,
    }


def child_end_to_end(path: Path, index_dir: Path) -> dict[str, Any]:
    """The whole ingest into a fresh SQLite store whose key index starts as the history's."""
    from quote2cash.engine.clock import ManualClock
    from quote2cash.engine.runtime import Runtime
    from quote2cash.usage import intake as intake_module
    from quote2cash.usage.intake import UsageIntake

    work = Path(tempfile.mkdtemp(prefix="q2c-usage-bench-"))
    try:
        (work / "usage" / "index").mkdir(parents=True)
        for item in index_dir.iterdir():
            os.link(item, work / "usage" / "index" / item.name)
        rt = Runtime.open(f"sqlite:///{work / 'q2c.sqlite'}", clock=ManualClock(NOW))
        ingest = UsageIntake(rt.engine, work / "usage", clock=rt.clock, chunk_rows=CHUNK)
        ingest._terms = terms  # type: ignore[method-assign]
        del intake_module
        started = time.perf_counter()
        receipts = ingest.ingest_file(path, source=SOURCE, actor="bench")
        seconds = time.perf_counter() - started
        ingest.close()
        rt.close()
        records = sum(r.records for r in receipts)
        return {
            "records": records,
            "seconds": round(seconds, 3),
            "records_per_s": round(records / seconds),
            "accepted": sum(r.accepted for r in receipts),
            "duplicate": sum(r.duplicate for r in receipts),
            "quarantined": sum(r.quarantined for r in receipts),
            "batches": len(receipts),
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def child_baseline(path: Path, sample: int) -> dict[str, Any]:
    """Per record: csv row -> dict checks -> Decimal -> time parse -> set lookup and add."""
    subs = {
        f"C-{k}": {"meters": {"api_calls": "call"}, "start": START} for k in range(SUBSCRIPTIONS)
    }
    history = {hash((SOURCE, f"h{j}")) for j in range(1_000_000)}
    seen: set[int] = set()
    outcomes: dict[str, int] = {}
    started, cpu = time.perf_counter(), time.process_time()
    records = 0
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            records += 1
            outcome = "accepted"
            sub = subs.get(row["subscription"])
            try:
                quantity = Decimal(row["quantity"])
            except InvalidOperation:
                quantity = Decimal(-1)
            at = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
            if (
                sub is None
                or row["meter"] not in sub["meters"]
                or quantity < 0
                or row["unit"] != sub["meters"][row["meter"]]
                or at < sub["start"]
            ):
                outcome = "quarantined"
            key = hash((SOURCE, row["id"]))
            if key in history or key in seen:
                outcome = "duplicate"
            elif outcome == "accepted":
                seen.add(key)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if records >= sample:
                break
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "records": records,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds),
        "cpu_seconds": round(cpu, 3),
        "records_per_cpu_s": round(records / cpu),
        "outcomes": outcomes,
        "history_keys": len(history),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000,000 records per format")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--history", type=int, default=HISTORY)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "dedup":
            result = child_validate_dedup(Path(rest[0]), Path(rest[1]))
        elif kind == "e2e":
            result = child_end_to_end(Path(rest[0]), Path(rest[1]))
        else:
            result = child_baseline(Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    count = args.records or (1_000_000 if args.quick else 5_000_000)
    index_dir = history_index(args.history)
    csv_path, parquet_path = files(count)
    env = child_env()
    me = str(Path(__file__).resolve())
    figures: dict[str, Any] = {
        "benchmark": "usage_ingest",
        "history_records": args.history,
        "records": count,
        "load_1m": round(os.getloadavg()[0], 2),
    }
    figures["csv"] = run_child(me, ["--child", "dedup", str(csv_path), str(index_dir)], env, 900)
    figures["parquet"] = run_child(
        me, ["--child", "dedup", str(parquet_path), str(index_dir)], env, 900
    )
    figures["end_to_end_parquet"] = run_child(
        me, ["--child", "e2e", str(parquet_path), str(index_dir)], env, 900
    )
    figures["baseline_loop_csv"] = run_child(
        me, ["--child", "baseline", str(csv_path), str(min(count, 300_000))], env, 900
    )
    base = figures["baseline_loop_csv"]["records_per_s"]
    figures["ratio_csv_vs_loop"] = round(figures["csv"]["records_per_s"] / base, 1)
    figures["ratio_parquet_vs_loop"] = round(figures["parquet"]["records_per_s"] / base, 1)
    base_cpu = figures["baseline_loop_csv"]["records_per_cpu_s"]
    figures["cpu_ratio_csv_vs_loop"] = round(figures["csv"]["records_per_cpu_s"] / base_cpu, 2)
    figures["cpu_ratio_parquet_vs_loop"] = round(
        figures["parquet"]["records_per_cpu_s"] / base_cpu, 2
    )
    figures["goal_records_per_s"] = 1_000_000

    def rss(f: dict[str, Any]) -> str:
        if "rss_anon_mb" not in f:
            return ""
        return f"; at the end {f['rss_anon_mb']} MB own + {f['rss_file_mb']} MB index pages"

    for kind in ("csv", "parquet", "end_to_end_parquet", "baseline_loop_csv"):
        f = figures[kind]
        warm = f", warm process {f['warm_records_per_s']:,}/s" if "warm_records_per_s" in f else ""
        per_cpu = f", {f['records_per_cpu_s']:,}/CPU-s" if "records_per_cpu_s" in f else ""
        print(
            f"{kind:>20}: {f['records_per_s']:>10,} records/s  ({f['records']:,} in "
            f"{f['seconds']} s{per_cpu}{warm}, peak RSS {f.get('peak_rss_mb', '-')} MB"
            f"{rss(f)})",
            file=sys.stderr,
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
