"""Customer matching at scale: ``q2c customers match`` on synthetic accounts (wall, CPU, peak
RSS), one incremental match against a store of the same size (p50/p99), and Splink (DuckDB
backend, its documented setup: blocking rules, u by random sampling, m by EM) on the same data
for the time ratio, plus both matchers' precision/recall on the labelled sets.

    python benchmarks/customer_matching.py --quick     # 20,000 accounts, under a minute
    python benchmarks/customer_matching.py             # 1,000,000 accounts
    python benchmarks/customer_matching.py --no-splink # ours only

Accounts come from tests/data/accounts_hard/generate.py (--scale). The last line is one JSON
object of the figures; ~6 sessions share this machine's 2 cores, so CPU time is reported as well.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Any

from _common import SRC, child_env
from quote2cash.defaults import packaged_config_dir
from quote2cash.masterdata.account_export import Accounts, match_accounts, read_accounts
from quote2cash.masterdata.match_index import MatchIndex
from quote2cash.masterdata.matching import Matcher, load_matching

ROOT = Path(__file__).parents[1]
HARD = ROOT / "tests" / "data" / "accounts_hard"


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("accounts_hard_generate", HARD / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def batch(accounts_csv: Path, out: Path) -> dict[str, Any]:
    """``q2c customers match`` in a child process: wall, CPU and peak RSS of that process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "quote2cash.cli",
            "customers",
            "match",
            str(accounts_csv),
            "--out",
            str(out),
            "--format",
            "json",
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
        cwd=SRC.parent,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "records": summary["records"],
        "clusters": summary["clusters"],
        "review_pairs": summary["review_pairs"],
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024),
    }


def incremental(matcher: Matcher, accounts: Accounts, queries: int) -> dict[str, Any]:
    """File all but ``queries`` records in an index, then time matching each of those alone."""
    rng = random.Random(7)
    held = set(rng.sample(range(len(accounts.ids)), queries))
    filed = [i for i in range(len(accounts.ids)) if i not in held]
    with tempfile.TemporaryDirectory() as folder:
        index = MatchIndex(matcher, Path(folder) / "index.sqlite")
        started = time.perf_counter()
        index.add([accounts.ids[i] for i in filed], [accounts.keys[i] for i in filed])
        build = time.perf_counter() - started
        times = []
        for i in sorted(held):
            t = time.perf_counter()
            index.match(accounts.ids[i], accounts.keys[i])
            times.append((time.perf_counter() - t) * 1000)
        index.close()
    times.sort()
    return {
        "store": len(filed),
        "queries": queries,
        "build_s": round(build, 1),
        "p50_ms": round(times[len(times) // 2], 2),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
        "max_ms": round(times[-1], 2),
    }


def splink_clusters(
    matcher: Matcher, accounts: Accounts, threshold: float = 0.95
) -> tuple[list[list[str]], float, float]:
    """Splink's documented DuckDB setup on the same records (names normalised like ours)."""
    import pyarrow as pa
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    frame = pa.table(
        {
            "unique_id": [rid for _, rid in accounts.ids],
            "name": [k.name_key or None for k in accounts.keys],
            "tax_id": [min(k.tax_keys) if k.tax_keys else None for k in accounts.keys],
            "domain": [k.domain for k in accounts.keys],
            "country": [k.country for k in accounts.keys],
            "postal_code": [k.postal_code for k in accounts.keys],
            "city": [k.city for k in accounts.keys],
            "street": [k.street for k in accounts.keys],
        }
    )
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("name", [0.95, 0.88]),
            cl.ExactMatch("tax_id"),
            cl.ExactMatch("domain"),
            cl.ExactMatch("country"),
            cl.ExactMatch("postal_code"),
            cl.ExactMatch("city"),
            cl.LevenshteinAtThresholds("street", [2]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("tax_id"),
            block_on("domain"),
            block_on("postal_code"),
            block_on("substr(name, 1, 5)", "country"),
        ],
    )
    started, cpu = time.perf_counter(), time.process_time()
    api = DuckDBAPI()
    linker = Linker(api.register(frame), settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("tax_id"), block_on("name", "postal_code")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postal_code"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("name"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
    rows = api._execute_sql_against_backend(
        f"SELECT unique_id, cluster_id FROM {clusters.physical_name}"
    ).fetchall()
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    groups: dict[Any, list[str]] = {}
    for rid, cluster in rows:
        groups.setdefault(cluster, []).append(str(rid))
    return list(groups.values()), wall, cpu_s


def precision_recall(groups: list[list[str]], truth_csv: Path) -> tuple[float, float]:
    with truth_csv.open(encoding="utf-8") as f:
        entity = {r["record_id"]: r["entity"] for r in csv.DictReader(f)}
    by_entity: dict[str, list[str]] = {}
    for rid, e in entity.items():
        by_entity.setdefault(e, []).append(rid)
    true = {frozenset(p) for g in by_entity.values() for p in combinations(g, 2)}
    found = {frozenset(p) for g in groups for p in combinations(g, 2)}
    right = len(found & true)
    return (right / len(found) if found else 1.0, right / len(true) if true else 1.0)


def labelled(matcher: Matcher, splink: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for label, folder in (("harder", HARD), ("committed_accounts_csv", None)):
        if folder is None:
            continue
        accounts = read_accounts(folder / "accounts.csv", matcher)
        ours = match_accounts(matcher, accounts)
        p, r = precision_recall([[k[1] for k in c] for c in ours.clusters], folder / "truth.csv")
        figures[f"{label}_ours"] = {"precision": round(p, 4), "recall": round(r, 4)}
        if splink:
            groups, _, _ = splink_clusters(matcher, accounts)
            p, r = precision_recall(groups, folder / "truth.csv")
            figures[f"{label}_splink"] = {"precision": round(p, 4), "recall": round(r, 4)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 accounts")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--no-splink", action="store_true")
    args = parser.parse_args()
    size = 20_000 if args.quick else args.records
    matcher = load_matching(packaged_config_dir() / "matching.yaml")
    figures: dict[str, Any] = {"records": size, "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        generator().write(data, generator().synthetic(size, 11))
        figures["batch"] = batch(data / "accounts.csv", Path(scratch) / "out")
        print(f"batch: {figures['batch']}", file=sys.stderr)
        accounts = read_accounts(data / "accounts.csv", matcher)
        figures["incremental"] = incremental(matcher, accounts, min(args.queries, size // 10))
        print(f"incremental: {figures['incremental']}", file=sys.stderr)
        if not args.no_splink:
            _, wall, cpu = splink_clusters(matcher, accounts)
            figures["splink"] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
            figures["splink"]["cpu_ratio_splink_to_ours"] = round(
                cpu / max(figures["batch"]["cpu_s"], 0.1), 2
            )
            print(f"splink: {figures['splink']}", file=sys.stderr)
    figures["labelled"] = labelled(matcher, not args.no_splink)
    figures["load_average_end"] = os.getloadavg()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
