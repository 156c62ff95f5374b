"""GetInvoiceStatus under open-loop load: ``GET /v1/invoices/{id}`` served by a real ``q2c serve``
process over a store with N events of history, at R requests/s from a second process.

The store: N events of billing history (three per invoice: drafted, finalized, paid; logged done,
bulk-loaded as an old store would hold them) plus D invoices the engine really processed (steps
recorded, cross-references linked, the read model kept by the projection), then the read model
rebuilt from the whole log as migration 0015 does (its time is reported). Requests ask by every
kind of id (billing id, number, ERP id, CRM id, global id), old and live invoices alike.

Load is open-loop: request i is sent at t0 + i/R whether or not earlier ones have answered, and
its latency counts from that planned instant (no coordinated omission). Four phases: ``idle``
(serve without workers), ``dispatching`` (serve's own worker on its event loop, ``--worker-mode
loop``, draining a backlog at full speed), ``worker_apart`` (the same with ``q2c worker`` in its
own process beside a serve without workers) and ``worker_child`` (``q2c serve`` as it starts by
default: its worker a child process it supervises). Every window starts a serve (and worker)
and warms serve for a second first, as in production, where the web process is not started
beside the load; the backlog is topped up to ``--backlog`` pending events before each
dispatching window, and a window whose worker ran out of work before it closed is flagged
(``worker_busy_whole_window``). The phases alternate ``--rounds`` times (3); each phase shows
the window with the median p99, every round's p99 beside it, and the dispatching phases' median
p99 over idle's (``*_p99_over_idle``). Each window also reports serve's CPU per request (robust
to a shared machine's load; with ``--processes N`` summed over every serve process, worker
children left out), the load generator's own CPU per request, the cores each party used during
the window (``cores_used``: serve, a worker apart, serve's worker children, the store's
PostgreSQL backends, the load generator; column ``cores`` their total, against this machine's
2) and the load average. The load generator (``--client raw``, the default) is
``_http_load``'s kept-alive raw sockets: aiohttp's client (``--client aiohttp``) cost a third of
a core at 1,000 requests/s on the same 2 cores as the server it measures. The p99 of the
requests planned in a window's first half second (``start_p99_ms``, column ``0-.5s``) is
reported apart from the rest's
(``rest_p99_ms``). Prints a table; the last line is one JSON object.

    python benchmarks/invoice_status.py            # PostgreSQL, 1,000,000 events, 1,000 req/s
    python benchmarks/invoice_status.py --quick    # under a minute
    python benchmarks/invoice_status.py --quick --processes 2   # q2c serve --processes 2
    python benchmarks/invoice_status.py --quick --processes 1,2 # both, on the same store
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from sqlalchemy import func, select

from _common import backend_cpu_seconds, child_env, pg_database, start_serve, stop_serve
from _http_load import open_loop_raw
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.identity import Operator
from quote2cash.identity.accounts import create_first_admin
from quote2cash.identity.tokens import issue_token
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.readmodels.invoice_status import InvoiceStatusProjection, rebuild
from quote2cash.store.schema import event_state, events

os.environ.setdefault("Q2C_AUDIT_KEY", "invoice-status-benchmark-audit-key-not-secret")
SRC = Path(__file__).parents[1] / "src"
DUE = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
COLUMNS = "event_id, source, type, subject, time, correlation_id, sequence, data, recorded_at"
STATE = (  # each history event's dispatch row: done when it was logged
    "INSERT INTO event_state (pos, subject, status, attempts, processed_at) "
    "SELECT pos, subject, 'done', 1, recorded_at FROM events"
)


def invoice(ident: str, number: str | None, status: str, paid: int = 0) -> dict[str, Any]:
    return {
        "object": {
            "object": "invoice",
            "id": ident,
            "number": number,
            "currency": "usd",
            "total": 14700,
            "amount_paid": paid,
            "amount_remaining": 14700 - paid,
            "status": status,
            "due_date": DUE,
            "status_transitions": {"paid_at": DUE - 86400 if paid else None},
            "lines": {"data": [{"description": "Platform seat", "amount": 14700}]},
        }
    }


def history_rows(n: int) -> Iterator[tuple[Any, ...]]:
    """N done events, three per old invoice, as an old store holds them."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        k, step = divmod(i, 3)
        ident, number = f"in_old{k:08d}", f"OLD-{k:07d}"
        kind, data = (
            ("billing.invoice.created", invoice(ident, None, "draft")),
            ("billing.invoice.finalized", invoice(ident, number, "open")),
            ("billing.payment.succeeded", invoice(ident, number, "paid", 14700)),
        )[step]
        subject = f"contract:OLD-{k:07d}"
        yield (
            f"evt_old{i:09d}",
            "billing",
            kind,
            subject,
            at,
            f"deal-old-{k}",
            step + 1,
            json.dumps(data),
            at,
        )


def load_history(url: str, n: int) -> None:
    """Bulk-load the history (PostgreSQL COPY; SQLite executemany) and its subjects."""
    if url.startswith("postgres"):
        with psycopg.connect(url) as conn:
            with conn.cursor() as cur, cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                for row in history_rows(n):
                    copy.write_row(row)
            conn.execute(STATE)
            conn.execute(
                "INSERT INTO subjects (subject, last_sequence, pending) "
                "SELECT subject, max(sequence), 0 FROM events GROUP BY subject"
            )
        return
    import sqlite3

    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    with db:
        db.executemany(
            f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                (
                    *r[:4],
                    r[4].strftime("%Y-%m-%d %H:%M:%S.%f"),
                    *r[5:8],
                    r[8].strftime("%Y-%m-%d %H:%M:%S.%f"),
                )
                for r in history_rows(n)
            ),
        )
        db.execute(STATE)
        db.execute(
            "INSERT INTO subjects (subject, last_sequence, pending) "
            "SELECT subject, max(sequence), 0 FROM events GROUP BY subject"
        )
    db.close()


def live_registry(xref: XrefStore) -> Registry:
    """Handlers recording the invoice flow's steps (no system called), linking its xrefs."""
    reg = Registry()

    async def finalized(ctx: HandlerContext, event: Event) -> None:
        obj = event.data["object"]
        posted = await ctx.step("erp.post_invoice", lambda _k: _value({"erp_id": obj["number"]}))
        gid = xref.ensure_global_id(Kind.INVOICE, "billing", obj["id"])
        xref.link(gid, "erp", f"erp-{posted['erp_id']}")
        await ctx.step("crm.publish_invoice", lambda _k: _value([f"a01{obj['number']}"]))

    reg.add("billing.invoice.finalized", finalized)
    reg.add("billing.*", _recorded_only)
    reg.add_projection(InvoiceStatusProjection())
    return reg


async def _value(value: Any) -> Any:
    return value


async def _recorded_only(ctx: HandlerContext, event: Event) -> None:
    return None


async def populate(url: str, history: int, live: int) -> dict[str, Any]:
    """History, live invoices through the worker, the rebuild, a viewer token, the ids to ask."""
    runtime = Runtime.open(url, sqlite_synchronous="NORMAL")
    try:
        t0 = time.perf_counter()
        load_history(url, history)
        history_s = time.perf_counter() - t0
        xref = XrefStore(runtime.engine, runtime.clock)
        worker = Worker(runtime, live_registry(xref))
        batch = [
            new_event(
                "billing.invoice.finalized",
                f"contract:LIVE-{i:06d}",
                invoice(f"in_live{i:08d}", f"LIVE-{i:06d}", "open"),
                source="billing",
            )
            for i in range(live)
        ]
        for start in range(0, live, 500):
            runtime.log.append_many(batch[start : start + 500])
            await worker.drain()
        t0 = time.perf_counter()
        with runtime.engine.begin() as conn:
            rebuilt = rebuild(conn)
        rebuild_s = time.perf_counter() - t0
        if url.startswith("postgres"):
            with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("ANALYZE")
        admin = create_first_admin(runtime, "admin")
        del admin
        token = issue_token(
            runtime,
            "admin",
            "bench",
            ["viewer"],
            by=Operator("admin", frozenset({"admin"}), via="password"),
            ttl=timedelta(hours=3),
        )
        ids: list[str] = []
        for i in range(live):
            gid = xref.global_id_for(Kind.INVOICE, "billing", f"in_live{i:08d}")
            ids += [f"in_live{i:08d}", f"LIVE-{i:06d}", f"erp-LIVE-{i:06d}", f"a01LIVE-{i:06d}"]
            ids += [gid] if gid else []
        olds = max(1, history // 3)
        rng = random.Random(7)
        for _ in range(len(ids)):
            k = rng.randrange(olds)
            ids.append(rng.choice((f"in_old{k:08d}", f"OLD-{k:07d}")))
        with runtime.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(events)).scalar_one()
        return {
            "token": token,
            "ids": ids,
            "events": int(total),
            "history_load_s": round(history_s, 1),
            "rebuild_s": round(rebuild_s, 1),
            "rebuilt_events": rebuilt,
        }
    finally:
        runtime.close()


def append_backlog(url: str, n: int) -> None:
    """``n`` pending events (billing ones no flow acts on: recorded and marked done) over 1,000
    subjects, appended as intake does, for serve's worker to drain during the window."""
    runtime = Runtime.open(url, sqlite_synchronous="NORMAL")
    try:
        for start in range(0, n, 1000):
            runtime.log.append_many(
                [
                    new_event(
                        "billing.customer.updated",
                        f"billing:cus_{i % 1000}",
                        {"n": i},
                        source="billing",
                    )
                    for i in range(start, min(n, start + 1000))
                ]
            )
    finally:
        runtime.close()


def pending_count(url: str) -> int:
    runtime = Runtime.open(url)
    try:
        with runtime.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(event_state)
                    .where(event_state.c.status == "pending")
                ).scalar_one()
            )
    finally:
        runtime.close()


# --- the load generator (its own process: ``--client``) ----------------------------------------


async def open_loop(base: str, token: str, ids: list[str], rate: int, seconds: float) -> Any:
    """Send ``rate`` requests/s for ``seconds``; latency from each request's planned instant."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rng = random.Random(11)
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), timeout=timeout
    ) as http:

        async def one(planned: float, ident: str) -> None:
            try:
                async with http.get(f"{base}/v1/invoices/{ident}", headers=headers) as answer:
                    await answer.read()
                    status = str(answer.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            latencies.append((time.perf_counter() - planned) * 1000)
            if status != "200":
                errors[status] = errors.get(status, 0) + 1

        total = int(rate * seconds)
        tasks = []
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter() + 0.05
        for i in range(total):
            planned = t0 + i / rate
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(planned, rng.choice(ids))))
        sent_s = time.perf_counter() - t0
        await asyncio.gather(*tasks)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    cuts = statistics.quantiles(latencies, n=1000)
    return {
        "requests": total,
        "rate": rate,
        "achieved_rps": round(total / sent_s, 1),  # the rate requests left at
        "ok_rps": round((total - sum(errors.values())) / sent_s, 1),
        "p50_ms": round(cuts[499], 2),
        "p99_ms": round(cuts[989], 2),
        "p999_ms": round(cuts[998], 2),
        "max_ms": round(max(latencies), 2),
        "errors": errors,
        "client": "aiohttp",
        "client_cpu_ms_per_request": round(cpu * 1000 / total, 3),
    }


CLIENT = "raw"
"""The load generator: ``raw`` (``_http_load``: kept-alive sockets, a fraction of aiohttp's
CPU per request, on uvloop) or ``aiohttp`` (its client session on asyncio's loop, as before)."""


def run_client(base: str, token: str, ids_file: Path, rate: int, seconds: float) -> Any:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            base,
            token,
            str(ids_file),
            str(rate),
            str(seconds),
            CLIENT,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_seconds(pid: int, *, worker_children: bool = False) -> float:
    """User plus system CPU time the process and its live descendants (``--processes``) have
    used (Linux ``/proc``), in seconds: serve's own (``q2c worker`` children left out), or with
    ``worker_children`` only theirs (serve's default ``--worker-mode process``)."""
    total = 0.0
    mine, workers = descendants(pid)
    for one in workers if worker_children else [pid, *mine]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def is_worker(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_text(errors="replace").split("\0")
    except FileNotFoundError:
        return False
    return "worker" in argv


def descendants(pid: int) -> tuple[list[int], list[int]]:
    """The live descendants of ``pid``: serve processes, and ``q2c worker`` children with theirs."""
    found: list[int] = []
    workers: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found, workers
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
        for child in children:
            mine, theirs = descendants(child)
            if is_worker(child):
                workers += [child, *mine, *theirs]
            else:
                found += [child, *mine]
                workers += theirs
    return found, workers


def loaded_window(
    process: subprocess.Popen[str],
    base: str,
    token: str,
    ids_file: Path,
    rate: int,
    s: float,
    *,
    url: str,
    worker: subprocess.Popen[str] | None = None,
) -> dict[str, Any]:
    """One load window, with serve's CPU per request (robust to a shared machine's load, unlike
    wall latency) and the load average beside it; and the cores each party used meanwhile
    (serve with its in-process worker if any, a worker apart, the store's PostgreSQL backends,
    the load generator): on this 2-core machine, a total near 2 means requests queue for a core."""
    cpu0 = cpu_seconds(process.pid)
    child0 = cpu_seconds(process.pid, worker_children=True)
    worker0 = cpu_seconds(worker.pid) if worker is not None else 0.0
    server0 = backend_cpu_seconds(url) if url.startswith("postgresql") else 0.0
    started = time.perf_counter()
    figures: dict[str, Any] = run_client(base, token, ids_file, rate, s)
    window = time.perf_counter() - started
    used = cpu_seconds(process.pid) - cpu0
    child_used = cpu_seconds(process.pid, worker_children=True) - child0
    worker_used = cpu_seconds(worker.pid) - worker0 if worker is not None else 0.0
    server_used = backend_cpu_seconds(url) - server0 if url.startswith("postgresql") else 0.0
    figures["serve_cpu_ms_per_request"] = round(used * 1000 / figures["requests"], 3)
    answered = figures["requests"] - sum(figures["errors"].values())
    figures["serve_cpu_ms_per_answer"] = round(used * 1000 / max(1, answered), 3)
    client_used = figures["client_cpu_ms_per_request"] * figures["requests"] / 1000
    cores = {
        "serve": used / window,
        "worker_apart": worker_used / window,
        "worker_child": child_used / window,
        "postgres": server_used / window,
        "client": client_used / window,
    }
    cores["total"] = sum(cores.values())
    figures["cores_used"] = {k: round(v, 2) for k, v in cores.items()}
    figures["load_average"] = round(os.getloadavg()[0], 1)
    return figures


def start_worker(url: str, folder: Path) -> subprocess.Popen[str]:
    """``q2c worker`` (the flows, on serve's sandbox) in its own process, as a production hub
    runs workers beside stateless web processes."""
    env = {**child_env({"Q2C_LOG_LEVEL": "WARNING"})}
    command = [sys.executable, "-c", "from quote2cash.cli import main; main()", "worker"]
    command += ["--db", url, "--workdir", str(folder / "sandbox")]
    from quote2cash.private_files import open_private

    with open_private(folder / "worker.log", "a") as log:
        return subprocess.Popen(command, stdout=log, stderr=log, text=True, env=env, cwd=folder)


def dispatching_window(
    url: str, args: argparse.Namespace, folder: Path, token: str, ids_file: Path, *, phase: str
) -> dict[str, Any]:
    """A window while a worker drains a backlog: serve's own on its loop (``dispatching``), one in
    its own process beside serve (``worker_apart``), or serve's worker child (``worker_child``,
    serve's default mode on PostgreSQL). Serve (and the worker) are started and serve warmed as
    in the idle phase (its start-up tail is not dispatch's), the worker draining meanwhile; the
    window counts only if the worker still had work when it closed
    (``worker_busy_whole_window``); reports what the worker dispatched during the window."""
    append_backlog(url, max(0, args.backlog - pending_count(url)))  # topped up to --backlog
    apart = phase == "worker_apart"
    mode = "loop" if phase == "dispatching" else "process"  # explicit: SQLite's default is loop
    process, base = start_serve(
        url, folder, workers=not apart, processes=args.processes, worker_mode=mode
    )
    worker = start_worker(url, folder) if apart else None
    try:
        run_client(base, token, ids_file, args.rate, min(1.0, args.seconds))  # warm-up
        pending = pending_count(url)
        started = time.perf_counter()
        figures = loaded_window(
            process, base, token, ids_file, args.rate, args.seconds, url=url, worker=worker
        )
        left = pending_count(url)
        window = time.perf_counter() - started
    finally:
        if worker is not None:
            stop_serve(worker)
        stop_serve(process)
    figures["worker_events_per_s"] = round((pending - left) / window, 1)
    figures["backlog_left"] = left
    figures["worker_busy_whole_window"] = left > 0
    if not left:
        print(
            f"  note: the worker drained the backlog before the window closed (--backlog "
            f"{args.backlog:,} too small): part of this window had no dispatch",
            file=sys.stderr,
        )
    return figures


DISPATCHING = ("dispatching", "worker_apart", "worker_child")
PHASES = ("idle", *DISPATCHING)


def median_windows(windows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per phase, the window whose p99 is the median of its rounds (its figures shown), with
    every round's p99 beside it; and the dispatching phases' median p99 over idle's."""
    run: dict[str, Any] = {}
    for phase, rounds in windows.items():
        ordered = sorted(rounds, key=lambda f: f["p99_ms"])
        run[phase] = {
            **ordered[(len(ordered) - 1) // 2],
            "p99_ms_rounds": [f["p99_ms"] for f in rounds],
        }
        run[phase]["rest_p99_ms_rounds"] = [f["rest_p99_ms"] for f in rounds]
    for phase in DISPATCHING:
        run[f"{phase}_p99_over_idle"] = round(run[phase]["p99_ms"] / run["idle"]["p99_ms"], 2)
        run[f"{phase}_busy_every_window"] = all(
            f["worker_busy_whole_window"] for f in windows[phase]
        )
    return run


def measure(url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The store once, then the four phases for each count of serve processes asked for."""
    made = asyncio.run(populate(url, args.events, args.live))
    ids_file = folder / "ids.json"
    ids_file.write_text(json.dumps(made.pop("ids")))
    token = made.pop("token")
    result: dict[str, Any] = dict(made)
    runs: dict[str, Any] = {}
    for count in args.counts:
        args.processes = count
        windows: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}
        for _ in range(args.rounds):  # the phases alternate: a shared machine's load hits all
            process, base = start_serve(url, folder, workers=False, processes=count)
            try:
                run_client(base, token, ids_file, args.rate, min(1.0, args.seconds))  # warm-up
                figures = loaded_window(
                    process, base, token, ids_file, args.rate, args.seconds, url=url
                )
                windows["idle"].append(figures)
            finally:
                stop_serve(process)
            for phase in DISPATCHING:
                figures = dispatching_window(url, args, folder, token, ids_file, phase=phase)
                windows[phase].append(figures)
        runs[str(count)] = median_windows(windows)
    result.update(runs[str(args.counts[0])])  # the first count's phases at the top, as before
    if len(args.counts) > 1:
        result["by_processes"] = runs
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        base, token, ids_file, rate, seconds, kind = sys.argv[2:8]
        ids = json.loads(Path(ids_file).read_text())
        if kind == "aiohttp":
            figures = asyncio.run(open_loop(base, token, ids, int(rate), float(seconds)))
        else:
            import uvloop

            paths = [f"/v1/invoices/{ident}" for ident in ids]
            auth = {"Authorization": f"Bearer {token}"}
            figures = uvloop.run(open_loop_raw(base, auth, paths, int(rate), float(seconds)))
        print(json.dumps(figures))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small store, short windows")
    parser.add_argument("--events", type=int, help="events of history (default 1,000,000)")
    parser.add_argument("--live", type=int, help="invoices processed by the worker")
    parser.add_argument("--rate", type=int, default=1000, help="requests per second")
    parser.add_argument("--seconds", type=float, help="length of each load window")
    parser.add_argument(
        "--backlog", type=int, help="pending events when each dispatching window's worker starts"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="windows per phase, alternated (median shown)"
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--processes",
        default="1",
        help="serve processes on the port (q2c serve --processes N; CPU summed over them), or "
        "several counts measured on the same store, e.g. 1,2",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="load generator: raw kept-alive sockets (default; cheap) or aiohttp's client",
    )
    args = parser.parse_args()
    global CLIENT
    CLIENT = args.client
    args.counts = [int(c) for c in str(args.processes).split(",") if c.strip()]
    args.events = args.events if args.events is not None else (30_000 if args.quick else 1_000_000)
    args.live = args.live or (100 if args.quick else 2000)
    args.seconds = args.seconds or (3.0 if args.quick else 30.0)
    args.backlog = args.backlog or (150_000 if args.quick else 800_000)
    from quote2cash.store.db import migrate, open_engine

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["Q2C_AUDIT_CHECKPOINT_FILE"] = str(folder / "checkpoints.jsonl")
        if args.backend == "sqlite":
            url, drop = f"sqlite:///{folder / 'hub.sqlite'}", (lambda: None)
        else:
            url, drop = pg_database("q2c_bench_inv")
        try:
            engine = open_engine(url)
            migrate(engine)
            engine.dispose()
            result = {
                "backend": args.backend,
                "processes": args.counts[0] if len(args.counts) == 1 else args.counts,
                **measure(url, args, folder),
            }
        finally:
            drop()
    print(
        f"{args.backend}: {result['events']} events in the store "
        f"(history bulk-loaded in {result['history_load_s']} s; read model rebuilt from "
        f"{result['rebuilt_events']} billing events in {result['rebuild_s']} s)"
    )
    print(
        f"  {'procs':<6}{'phase':<13}{'rate':>6}{'sent/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'p99.9':>8}{'0-.5s':>8}{'rest':>8}{'errors':>8}{'worker ev/s':>13}"
        f"{'cpu ms/req':>12}{'client':>8}{'cores':>6}{'load':>6}  p99 of each round"
    )
    runs = result.get("by_processes") or {str(args.counts[0]): result}
    for count, run in runs.items():
        for phase in PHASES:
            f = run[phase]
            print(
                f"  {count:<6}{phase:<13}{f['rate']:>6}{f['achieved_rps']:>8}{f['p50_ms']:>8}"
                f"{f['p99_ms']:>8}{f['p999_ms']:>8}{f.get('start_p99_ms', '-')!s:>8}"
                f"{f.get('rest_p99_ms', '-')!s:>8}{sum(f['errors'].values()):>8}"
                f"{f.get('worker_events_per_s', '-'):>13}{f['serve_cpu_ms_per_request']:>12}"
                f"{f['client_cpu_ms_per_request']:>8}{f['cores_used']['total']:>6}"
                f"{f['load_average']:>6}  {' / '.join(map(str, f['p99_ms_rounds']))}"
            )
        print(
            f"  {count:<6}median p99 over idle's: dispatching {run['dispatching_p99_over_idle']}x, "
            f"worker apart {run['worker_apart_p99_over_idle']}x, worker child "
            f"{run['worker_child_p99_over_idle']}x (worker busy in every window: "
            f"{all(run[f'{phase}_busy_every_window'] for phase in DISPATCHING)})"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
