"""Engine throughput, end to end with recorded steps, against peers measured in the same run.

Headline: N events across S subjects appended through ``EventLog.append_many`` (batches of
1,000, each committed) and dispatched by ``Worker(runtime, registry)`` with its defaults, the
handler recording ONE or THREE gated steps per event (``ctx.step``; each step writes its step
row and its keyed audit entry, as shipped), on SQLite (``Runtime.open`` defaults: WAL,
synchronous FULL) and PostgreSQL (server defaults). The rate is events appended *and* processed
per second of wall time; CPU microseconds per event of the worker process and of its PostgreSQL
backends are reported beside it (robust to a shared machine's load). PostgreSQL with one step is
measured again over 1,000,000 processed events of history (each with its dispatch row, step row
and audit entry), in a copy of a template database the first run builds and later runs reuse
(``CREATE DATABASE ... TEMPLATE``; kept on the server, named for the schema head, the history and
the subject count; ``--fresh-history`` rebuilds it); that run goes twice on its copy with new
events: the second round is the figure (a server that has been running), the first (caches cold
after the copy) is reported beside it. ``noop_dispatch`` (a handler that records
nothing; dispatch only, the append not counted) is reported beside it and never leads.

Peers on the same PostgreSQL, same N jobs across the same S keys, each job one INSERT of a
result row in its own transaction (see ``engine_peers.py`` for their settings and guarantees):
procrastinate with a lock per subject, pgqueuer, DBOS with a partitioned queue per key; and the
raw batched insert of the same event rows as the ceiling. On both stores, the floor of the
guarantees' rows: the same events' step rows and audit entries written by the database driver
alone in the commits per-key order allows (``engine_peers.floor_rows``), and the engine's share
of it. Every measurement runs in its own process on its own fresh store, dropped afterwards. The
last line is one JSON object.

    python benchmarks/engine_throughput.py            # 5,000 events, 500 subjects, 1M history
    python benchmarks/engine_throughput.py --quick    # 1,000 events, 100 subjects, 1M history
    python benchmarks/engine_throughput.py --backends postgres --skip-peers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    backend_cpu_seconds,
    child_env,
    pg_blocks_read,
    pg_database,
    pg_exists,
    pg_rename,
    run_child,
    schema_head,
    store_url,
)

APPEND_BATCH = 1000
STEP_SYSTEMS = ("billing", "erp", "crm")
PEERS = ("procrastinate_locked", "pgqueuer", "dbos")
CHILD_TIMEOUT = 1200.0


# -- the measured runs (in the child process) ---------------------------------------------------
def engine_run(
    url: str, n: int, subjects: int, steps: int, history: int, rounds: int = 1
) -> dict[str, Any]:
    """Append N events then drain them with a default worker; ``steps=0`` is the no-op handler.

    With ``rounds`` > 1 the same is done again with new events on the same store: the figures
    are the last round's (a server that has been running), the first round's rate is beside them
    (``first_round_per_s``: right after a restart, caches cold)."""
    from engine_history import history_events, make_events, seed_history, step_registry
    from quote2cash.engine.runtime import Runtime
    from quote2cash.engine.worker import Worker, raise_worker_gc_threshold

    raise_worker_gc_threshold()  # as `q2c worker` does
    runtime = Runtime.open(url)
    postgres = runtime.engine.dialect.name == "postgresql"
    seeded = time.perf_counter()
    if history and history_events(runtime) != history:  # not a copy of the history template
        seed_history(runtime, history, subjects)
    seeded = time.perf_counter() - seeded
    first_round = 0.0
    for round_ in range(rounds):
        marks = _marks(runtime)
        evs = make_events(n, subjects)
        worker = Worker(runtime, step_registry(steps, STEP_SYSTEMS))
        server_cpu = backend_cpu_seconds(url) if postgres else 0.0
        blocks = pg_blocks_read(url) if postgres else 0
        cpu = time.process_time()
        start = time.perf_counter()
        for i in range(0, n, APPEND_BATCH):
            runtime.log.append_many(evs[i : i + APPEND_BATCH])
        appended = time.perf_counter()
        processed = asyncio.run(worker.drain()).processed
        done = time.perf_counter()
        cpu = time.process_time() - cpu
        server_cpu = backend_cpu_seconds(url) - server_cpu if postgres else 0.0
        recorded, audited = _since(runtime, marks)
        if postgres:  # the pool's backends exit and publish their block counts
            runtime.engine.dispose()
            time.sleep(0.5)
            blocks = pg_blocks_read(url) - blocks
        if processed != n:
            raise RuntimeError(f"processed {processed} of {n} events")
        if recorded < n * steps or audited < n * steps:
            raise RuntimeError(f"{recorded} step rows and {audited} audit entries for {n}x{steps}")
        if round_ == 0:
            first_round = n / (done - start)
    runtime.close()
    return {
        "events": n,
        "steps_per_event": steps,
        "history_events": history,
        "append_per_s": n / (appended - start),
        "dispatch_per_s": n / (done - appended),
        "end_to_end_per_s": n / (done - start),
        "first_round_per_s": first_round,
        "worker_cpu_us_per_event": cpu / n * 1e6,
        "server_cpu_us_per_event": server_cpu / n * 1e6,
        "server_blocks_read_per_event": blocks / n,
        "audit_entries": audited,
        "history_seed_s": seeded,
    }


def _marks(runtime: Any) -> tuple[int, int]:
    """The log's and the audit log's last positions (what a round adds comes after them)."""
    with runtime.engine.connect() as conn:
        pos = conn.exec_driver_sql("SELECT coalesce(max(pos), 0) FROM events").scalar_one()
        audit = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM audit_log").scalar_one()
    return int(pos), int(audit)


def _since(runtime: Any, marks: tuple[int, int]) -> tuple[int, int]:
    """Step rows of the round's events and audit entries written since ``marks`` (by index)."""
    with runtime.engine.connect() as conn:
        steps = conn.exec_driver_sql(
            f"SELECT count(*) FROM steps WHERE event_pos > {marks[0]:d}"
        ).scalar_one()
        audit = conn.exec_driver_sql(
            f"SELECT count(*) FROM audit_log WHERE id > {marks[1]:d}"
        ).scalar_one()
    return int(steps), int(audit)


def child_main(args: argparse.Namespace) -> dict[str, Any]:
    if args.child == "seed_history":
        from engine_history import seed_history
        from quote2cash.engine.runtime import Runtime

        runtime = Runtime.open(args.url)
        seed_history(runtime, args.history, args.subjects)
        runtime.close()
        return {"history_events": args.history}
    if args.child == "engine":
        return engine_run(
            args.url, args.events, args.subjects, args.steps, args.history or 0, args.rounds
        )
    if args.child == "raw_insert":
        from engine_history import make_events
        from engine_peers import raw_insert

        return raw_insert(args.url, make_events(args.events, args.subjects))
    if args.child == "floor":
        from engine_history import make_events
        from engine_peers import floor_rows

        return floor_rows(args.url, make_events(args.events, args.subjects), args.steps)
    from engine_peers import run_peer

    return run_peer(
        args.child,
        args.url,
        args.events,
        args.subjects,
        timeout=CHILD_TIMEOUT / 2,
        dbos_polling=args.dbos_polling,
    )


# -- the run (parent) ----------------------------------------------------------------------------
class ScratchStores:
    """The run's fresh PostgreSQL databases, created together up front (in parallel: CREATE
    DATABASE is slow on a loaded machine) and dropped together at the end, so neither falls
    inside a measurement. SQLite stores are new files in ``folder``."""

    def __init__(self, folder: str, postgres: int) -> None:
        self.folder = folder
        with ThreadPoolExecutor(max_workers=4) as pool:
            self._ready = list(pool.map(lambda _: pg_database("q2c_engine"), range(postgres)))
        self._used: list[Callable[[], None]] = []

    def history(self, args: argparse.Namespace, history: int) -> tuple[str, float, float]:
        """A fresh database holding ``history`` processed events: a copy of the template
        (built first if missing); returns its URL, the build's and the copy's seconds."""
        template = f"q2c_bench_history_{schema_head()}_{history}_{args.subjects}"
        built = 0.0
        if args.fresh_history or not pg_exists(template):
            built = time.perf_counter()
            building, drop = pg_database("q2c_bench_history_building")
            try:
                env = child_env({"Q2C_AUDIT_KEY": "engine-benchmark-audit-key-not-secret"})
                env["Q2C_AUDIT_CHECKPOINT_FILE"] = str(Path(self.folder) / "history.jsonl")
                seed = ["--child=seed_history", f"--url={building}", f"--history={history}"]
                run_child(__file__, [*seed, f"--subjects={args.subjects}"], env, CHILD_TIMEOUT)
                pg_rename(building.rsplit("/", 1)[1], template, replace=True)
            except BaseException:
                drop()
                raise
            built = time.perf_counter() - built
        copied = time.perf_counter()
        url, drop = pg_database("q2c_engine", template=template)
        self._used.append(drop)
        return url, built, time.perf_counter() - copied

    def take(self, backend: str, tag: str) -> str:
        if backend == "sqlite":
            return store_url(backend, self.folder, tag)[0]
        url, drop = self._ready.pop()
        self._used.append(drop)
        return url

    def drop_all(self) -> None:
        drops = self._used + [drop for _, drop in self._ready]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda drop: drop(), drops))


def measure(
    kind: str,
    backend: str,
    stores: ScratchStores,
    args: argparse.Namespace,
    url: str | None = None,
    **extra: int,
) -> dict[str, Any]:
    """One measurement in its own process on a fresh store of ``backend`` (or ``url``)."""
    tag = f"{kind}-{'-'.join(f'{k}{v}' for k, v in extra.items())}"
    url = url or stores.take(backend, tag)
    options = [f"--{k}={v}" for k, v in extra.items()]
    env = child_env(
        {
            "Q2C_AUDIT_KEY": "engine-benchmark-audit-key-not-secret",
            "Q2C_AUDIT_CHECKPOINT_FILE": str(Path(stores.folder) / f"{tag}.checkpoints.jsonl"),
        }
    )
    return run_child(
        __file__,
        [
            f"--child={kind}",
            f"--url={url}",
            f"--events={args.events}",
            f"--subjects={args.subjects}",
            f"--dbos-polling={args.dbos_polling}",
            *options,
        ],
        env,
        CHILD_TIMEOUT,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--events", type=int, help="events (and peer jobs) per measurement")
    parser.add_argument("--subjects", type=int, help="subjects (keys) they are spread over")
    parser.add_argument("--history", type=int, help="processed events already in the store")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--skip-peers", action="store_true", help="engine and ceiling only")
    parser.add_argument(
        "--fresh-history", action="store_true", help="rebuild the history template database"
    )
    parser.add_argument(
        "--dbos-polling", type=float, default=0.1, help="DBOS queue polling (its default: 1 s)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.events = args.events or (1_000 if args.quick else 5_000)
    args.subjects = args.subjects or (100 if args.quick else 500)
    if args.child:
        out = child_main(args)
        print(json.dumps(out))
        return out
    history = args.history if args.history is not None else 1_000_000
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgres"}:
        parser.error(f"--backends: unknown {sorted(unknown)}; expected sqlite and/or postgres")
    return run(args, backends, history)


def run(args: argparse.Namespace, backends: list[str], history: int) -> dict[str, Any]:
    n, subjects = args.events, args.subjects
    out: dict[str, Any] = {"events": n, "subjects": subjects, "quick": bool(args.quick)}
    print(
        f"{n:,} events across {subjects:,} subjects; shipped durability, Worker defaults, "
        "audit on; each figure from its own process on a fresh store",
        flush=True,
    )
    started = time.perf_counter()
    postgres = 6 + (0 if args.skip_peers else len(PEERS))
    postgres = postgres if "postgres" in backends else 0
    with tempfile.TemporaryDirectory() as folder:
        stores = ScratchStores(folder, postgres)
        try:
            measure_all(args, backends, history, stores, out)
        finally:
            stores.drop_all()
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))
    return out


def measure_all(
    args: argparse.Namespace,
    backends: list[str],
    history: int,
    stores: ScratchStores,
    out: dict[str, Any],
) -> None:
    """Every figure of the run into ``out``, one measurement after another."""
    for backend in backends:
        short = "pg" if backend == "postgres" else "sqlite"
        for steps in (1, 3, 0):
            r = measure("engine", backend, stores, args, steps=steps)
            name = f"{short}_steps{steps}" if steps else f"{short}_noop_dispatch"
            key = "dispatch_per_s" if steps == 0 else "end_to_end_per_s"
            out[f"{name}_events_per_s"] = round(r[key])
            out[f"{name}_append_per_s"] = round(r["append_per_s"])
            out[f"{name}_worker_cpu_us_per_event"] = round(r["worker_cpu_us_per_event"])
            if backend == "postgres":
                out[f"{name}_server_cpu_us_per_event"] = round(r["server_cpu_us_per_event"])
                out[f"{name}_blocks_read_per_event"] = round(r["server_blocks_read_per_event"], 2)
            if steps:
                out[f"{name}_dispatch_per_s"] = round(r["dispatch_per_s"])
            _say(backend, name, r)
        if backend == "postgres" and history:
            url, built, copied = stores.history(args, history)
            if built:
                print(f"    (history template of {history:,} events built in {built:.1f} s)")
            r = measure(
                "engine", backend, stores, args, steps=1, history=history, rounds=2, url=url
            )
            # The acceptance's key, with the history it was measured over beside it:
            # quick mode seeds fewer than a million events and says so.
            out["pg_steps1_events_per_s_1m_history"] = round(r["end_to_end_per_s"])
            out["pg_steps1_events_per_s_1m_history_cold"] = round(r["first_round_per_s"])
            out["pg_steps1_1m_history_worker_cpu_us_per_event"] = round(
                r["worker_cpu_us_per_event"]
            )
            out["pg_steps1_1m_history_server_cpu_us_per_event"] = round(
                r["server_cpu_us_per_event"]
            )
            out["pg_steps1_1m_history_blocks_read_per_event"] = round(
                r["server_blocks_read_per_event"], 2
            )
            out["history_events"] = history
            out["history_is_1m"] = history >= 1_000_000
            out["history_ratio"] = round(r["end_to_end_per_s"] / out["pg_steps1_events_per_s"], 3)
            out["history_template_built_s"] = round(built, 1)
            out["history_copy_s"] = round(copied, 1)
            _say(backend, f"steps1 over {history:,} processed events", r)
            cold = r["first_round_per_s"]
            print(f"    (its first round, caches cold after the copy: {cold:,.0f}/s)")
            print(f"    (history database copied from its template in {copied:.1f} s)")
        raw = measure("raw_insert", backend, stores, args)
        out[f"{short}_raw_insert_rows_per_s"] = round(raw["rows_per_s"])
        print(f"  {backend:<9} raw batched insert (ceiling): {raw['rows_per_s']:>9,.0f} rows/s")
        floors(args, stores, out, backend)
    if "pg_raw_insert_rows_per_s" in out:
        out["raw_insert_rows_per_s"] = out["pg_raw_insert_rows_per_s"]
    if not args.skip_peers and "postgres" in backends:
        peers(args, stores, out)


def floors(
    args: argparse.Namespace, stores: ScratchStores, out: dict[str, Any], backend: str
) -> None:
    """The rows the guarantees write, by the database driver alone (``engine_peers.floor_rows``):
    the rate no implementation of these guarantees on this store beats; the engine's share."""
    short = "pg" if backend == "postgres" else "sqlite"
    driver = "psycopg" if backend == "postgres" else "sqlite3"
    for steps in (1, 3):
        r = measure("floor", backend, stores, args, steps=steps)
        rate = r["end_to_end_per_s"]
        out[f"{short}_steps{steps}_floor_events_per_s"] = round(rate)
        share = out[f"{short}_steps{steps}_events_per_s"] / rate
        out[f"{short}_steps{steps}_share_of_floor"] = round(share, 3)
        print(
            f"  {backend:<9} rows of {steps} step(s) per event, {driver} alone (ceiling): "
            f"{rate:>8,.0f} events/s in {r['rounds']} ordered commits; the engine reaches "
            f"{share:.0%} of it",
            flush=True,
        )


def peers(args: argparse.Namespace, stores: ScratchStores, out: dict[str, Any]) -> None:
    from engine_peers import GUARANTEES

    ours = out["pg_steps1_events_per_s"]
    print(f"  peers on PostgreSQL, {args.events:,} jobs across {args.subjects:,} keys:")
    for peer in PEERS:
        r = measure(peer, "postgres", stores, args)
        rate = r["end_to_end_per_s"]
        out[f"{peer}_jobs_per_s"] = round(rate, 1)
        out[f"{peer}_order_violations"] = r["order_violations"]
        out[f"ratio_vs_{peer}"] = round(ours / rate, 2)
        print(
            f"    {peer:<21} end to end {rate:>8,.1f} jobs/s (enqueue {r['enqueue_per_s']:,.0f}/s,"
            f" then {r['process_per_s']:,.1f}/s to finish), out-of-order rows"
            f" {r['order_violations']}; engine pg steps1 / it = {out[f'ratio_vs_{peer}']}x"
            f"\n      {GUARANTEES[peer]}",
            flush=True,
        )


def _say(backend: str, name: str, r: dict[str, Any]) -> None:
    print(
        f"  {backend:<9} {name:<32} end to end {r['end_to_end_per_s']:>8,.0f}/s  append "
        f"{r['append_per_s']:>8,.0f}/s  dispatch {r['dispatch_per_s']:>8,.0f}/s  audit entries "
        f"{r['audit_entries']:,}; CPU/event worker {r['worker_cpu_us_per_event']:,.0f} us, "
        f"PostgreSQL {r['server_cpu_us_per_event']:,.0f} us, "
        f"blocks read {r['server_blocks_read_per_event']:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
