"""The ``q2c`` command line: run workers, inspect events, replay with approval, verify audit."""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from quote2cash.cli_identity import TokenOption, acting_operator
from quote2cash.cli_text import DataTable, escape
from quote2cash.engine.control import ControlError
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import IdentityError
from quote2cash.settings import get_settings

app = typer.Typer(help="quote2cash: the quote-to-cash integration hub.", no_args_is_help=True)
events_app = typer.Typer(help="Inspect the event log.", no_args_is_help=True)
dlq_app = typer.Typer(help="The exception queue and dead letters.", no_args_is_help=True)
replay_app = typer.Typer(help="Replay events, approved by a second person.", no_args_is_help=True)
systems_app = typer.Typer(help="Pause, resume and inspect target systems.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Local Salesforce, Stripe and Tryton systems.", no_args_is_help=True)
for sub, name in [
    (sandbox_app, "sandbox"),
    (events_app, "events"),
    (dlq_app, "dlq"),
    (replay_app, "replay"),
    (systems_app, "systems"),
    (audit_app, "audit"),
]:
    app.add_typer(sub, name=name)


catalog_app = typer.Typer(
    help="Catalog mapping: CRM codes -> billing prices, ERP items.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")


def _api_commands() -> None:
    from quote2cash.api.cli import serve_command, tokens_app
    from quote2cash.cli_identity import operators_app

    app.command("serve")(serve_command)
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(operators_app, name="operators")


_api_commands()


def _reconcile_commands() -> None:
    from quote2cash.reconcile.cli import register

    register(app)


_reconcile_commands()


def _audit_commands() -> None:
    from quote2cash.cli_audit import register

    register(audit_app)


_audit_commands()

console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]


SandboxDir = Annotated[str, typer.Option("--workdir", help="Where the sandbox keeps its state")]


def _yes_no(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="red")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def open_runtime(db: str | None, *, initialise: bool = False) -> Runtime:
    settings = get_settings()
    url = db or settings.database_url
    try:
        rt = Runtime.open(
            url, initialise=initialise, sqlite_synchronous=settings.sqlite_synchronous
        )
    except Exception as exc:
        fail(f"cannot open the store: {type(exc).__name__}: {exc}")
    if not initialise:
        from quote2cash.store.db import is_initialised

        if not is_initialised(rt.engine):
            fail("the store is not initialised; run `q2c init` first")
    return rt


def parse_time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{field}: {value!r} is not an ISO 8601 time (e.g. 2026-11-26T10:00:00Z)")
    if parsed.tzinfo is None:
        fail(f"{field}: {value!r} has no time zone; give UTC explicitly (…Z or +00:00)")
    return parsed.astimezone(UTC)


@app.command()
def init(
    db: DbOption = None,
    admin: Annotated[str, typer.Option("--admin", help="Name of the first admin")] = "admin",
) -> None:
    """Create or migrate the store's schema; the first time, create the first admin."""
    from quote2cash.engine.audit_key import AuditKeyError, ensure_key
    from quote2cash.identity.accounts import admin_exists, create_first_admin
    from quote2cash.store.db import current_revision

    url = db or get_settings().database_url
    try:
        key, created = ensure_key(url)
    except AuditKeyError as exc:
        fail(str(exc))
    rt = open_runtime(db, initialise=True)
    console.print(f"store ready at revision [bold]{current_revision(rt.engine)}[/]")
    made = "created (mode 0600; back it up away from the store)" if created else "found"
    console.print(escape(f"audit key {key.key_id}: {made} in {key.source}"))
    console.print(escape(f"audit checkpoints: {rt.checkpoints.where}"))
    if admin_exists(rt):
        console.print("an admin exists already; admins add operators with `q2c operators add`")
        return
    try:
        password = create_first_admin(rt, admin)
    except IdentityError as exc:
        fail(str(exc))
    console.print(
        escape(
            f"first admin {admin!r} created; its one-time password is shown once, change it "
            f"now with `q2c operators password {admin}`:"
        ),
        highlight=False,
    )
    print(password)


def load_registry(spec: str) -> Registry:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        registry = getattr(module, attr or "registry")
    except (ImportError, AttributeError) as exc:
        fail(f"--handlers {spec!r}: cannot load a registry ({exc})")
    if not isinstance(registry, Registry):
        fail(f"--handlers {spec!r} is a {type(registry).__name__}, not a Registry")
    return registry


@app.command()
def worker(
    db: DbOption = None,
    handlers: Annotated[
        str,
        typer.Option(
            help="'flows' (the business processes, with the configured systems) or "
            "module:attribute of a handler Registry"
        ),
    ] = "flows",
    config: SystemsConfig = None,
    sandbox: SandboxDir = ".q2c/sandbox",
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    once: Annotated[bool, typer.Option(help="Drain what is ready now, then exit")] = False,
) -> None:
    """Run a worker: events are handled in order per subject until SIGTERM or Ctrl-C."""
    from contextlib import AsyncExitStack

    from quote2cash.engine.worker import Worker
    from quote2cash.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    rt = open_runtime(db)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            if handlers == "flows":
                from pathlib import Path

                from quote2cash.flows import build_registry
                from quote2cash.flows.deps import FlowDeps
                from quote2cash.masterdata import ConfigError

                systems = await stack.enter_async_context(load_systems(config, sandbox))
                try:
                    deps = FlowDeps.build(rt, systems, Path(settings.config_dir))
                except ConfigError as exc:
                    fail(f"{exc} (set Q2C_CONFIG_DIR to the folder with catalog.yaml)")
                registry = build_registry(deps)
            else:
                registry = load_registry(handlers)
            w = Worker(rt, registry, batch_size=batch_size)
            if once:
                from quote2cash.engine.checkpoints import Checkpointer

                report = await w.drain()
                await Checkpointer(rt).tick(force=True)
                console.print(f"processed {report.processed} events")
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await w.run(stop)

    asyncio.run(main())


@events_app.command("list")
def events_list(
    db: DbOption = None,
    status: Annotated[
        str | None, typer.Option(help="pending, parked, done, exception or dead")
    ] = None,
    subject: str | None = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id")] = None,
    limit: int = 50,
) -> None:
    """The newest events, optionally filtered."""
    from quote2cash.engine.queries import list_events

    rows = list_events(
        open_runtime(db), status=status, subject=subject, correlation_id=correlation_id, limit=limit
    )
    table = DataTable(
        "pos", "id", "type", "subject", "seq", "status", "attempts", "correlation", "parked on"
    )
    for r in rows:
        parked = (
            f"{r.parked_on}: {r.park_reason} (until {r.park_deadline:%Y-%m-%d %H:%M}Z)"
            if r.parked_on and r.park_deadline
            else ""
        )
        table.add_row(
            str(r.pos),
            r.id,
            r.type,
            r.subject,
            str(r.sequence),
            r.status,
            str(r.attempts),
            r.correlation_id,
            parked,
        )
    console.print(table)


@events_app.command("show")
def events_show(event_id: str, db: DbOption = None) -> None:
    """One event with its steps and failure history, as JSON."""
    from quote2cash.engine.queries import find_event

    found = find_event(open_runtime(db), event_id)
    if found is None:
        fail(f"no event with id or position {event_id!r}")
    console.print_json(json.dumps(found, default=str))


@dlq_app.command("list")
def dlq_list(
    db: DbOption = None,
    kind: Annotated[str | None, typer.Option(help="exception or dead (default both)")] = None,
) -> None:
    """Events waiting for a person: permanent failures and exhausted retries, with reasons."""
    from quote2cash.engine.queries import failed_events

    if kind not in (None, "exception", "dead"):
        fail(f"--kind must be 'exception' or 'dead', not {kind!r}")
    rows = failed_events(open_runtime(db), kind)
    table = DataTable("id", "type", "subject", "queue", "category", "attempts", "reason")
    for r in rows:
        table.add_row(
            r.id,
            r.type,
            r.subject,
            r.status,
            r.category or "-",
            str(r.attempts),
            r.last_error or "",
        )
    console.print(table)
    console.print(f"{len(rows)} event(s) waiting")


@replay_app.command("request")
def replay_request(
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log)")],
    event_id: Annotated[list[str] | None, typer.Option("--event-id")] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, exclusive")] = None,
    include_processed: Annotated[bool, typer.Option("--include-processed")] = False,
    db: DbOption = None,
    token: TokenOption = None,
) -> None:
    """Ask for a replay; another operator must approve it."""
    from quote2cash.engine.replay import Selector, request_replay

    selector = Selector(
        tuple(event_id or ()),
        correlation_id,
        parse_time(since, "--since"),
        parse_time(until, "--until"),
        include_processed,
    )
    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    try:
        req = request_replay(runtime, selector, by=by, reason=reason)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    sensitive = " (finance-sensitive: needs a finance_approver)" if req.finance_sensitive else ""
    console.print(f"replay request [bold]{req.id}[/] for {req.event_count} event(s){sensitive}")


@replay_app.command("approve")
def replay_approve(
    request_id: int, note: str = "", db: DbOption = None, token: TokenOption = None
) -> None:
    """Approve (and execute) a replay request made by someone else."""
    from quote2cash.engine.replay import approve_replay

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    try:
        req = approve_replay(runtime, request_id, by=by, note=note)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    console.print(
        f"replay request {req.id} approved by {escape(req.decided_by or '')}: "
        f"{req.event_count} event(s)"
    )


@replay_app.command("reject")
def replay_reject(
    request_id: int,
    note: Annotated[str, typer.Option(help="Why it is rejected")],
    db: DbOption = None,
    token: TokenOption = None,
) -> None:
    """Reject a replay request."""
    from quote2cash.engine.replay import reject_replay

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    try:
        reject_replay(runtime, request_id, by=by, note=note)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    console.print(f"replay request {request_id} rejected")


@replay_app.command("list")
def replay_list(db: DbOption = None, status: str | None = None) -> None:
    """Replay requests and their decisions."""
    from quote2cash.engine.replay import list_requests

    table = DataTable("id", "status", "events", "finance", "requested by", "decided by", "reason")
    for r in list_requests(open_runtime(db), status):
        table.add_row(
            str(r.id),
            r.status,
            str(r.event_count),
            "yes" if r.finance_sensitive else "",
            r.requested_by,
            r.decided_by or "",
            r.reason,
        )
    console.print(table)


@systems_app.command("pause")
def systems_pause(
    system: str,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log)")],
    db: DbOption = None,
    token: TokenOption = None,
) -> None:
    """Hold all work for SYSTEM (in order) until it is resumed."""
    from quote2cash.engine.control import pause_system

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    try:
        bound = pause_system(runtime, system, by=by, reason=reason)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    console.print(
        f"{escape(system)} paused: no call to it starts from now on (every hub process "
        f"re-reads pauses within {bound:g} s)"
    )


@systems_app.command("resume")
def systems_resume(system: str, db: DbOption = None, token: TokenOption = None) -> None:
    """Resume SYSTEM; its held work drains in order."""
    from quote2cash.engine.control import resume_system

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    try:
        resume_system(runtime, system, by=by)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    console.print(f"{escape(system)} resumed")


@systems_app.command("window")
def systems_window(
    system: str,
    start: Annotated[str, typer.Option(help="ISO time with zone")],
    end: Annotated[str, typer.Option(help="ISO time with zone")],
    reason: Annotated[str, typer.Option()],
    db: DbOption = None,
    token: TokenOption = None,
) -> None:
    """Schedule a maintenance window for SYSTEM."""
    from quote2cash.engine.control import schedule_window

    starts, ends = parse_time(start, "--start"), parse_time(end, "--end")
    assert starts is not None and ends is not None
    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    try:
        wid = schedule_window(runtime, system, starts, ends, by=by, reason=reason)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    console.print(f"window {wid} scheduled for {escape(system)}")


@systems_app.command("status")
def systems_status(db: DbOption = None) -> None:
    """Paused systems, maintenance windows and how many subjects wait on each."""
    from quote2cash.engine.control import system_status

    table = DataTable("system", "paused", "reason", "windows", "held subjects")
    for s in system_status(open_runtime(db)):
        windows = s.get("windows") or []
        assert isinstance(windows, list)
        win = "; ".join(
            f"{w['starts_at']:%Y-%m-%d %H:%M}→{w['ends_at']:%H:%M}"
            + (" (now)" if w["in_force"] else "")
            for w in windows
        )
        table.add_row(
            str(s["system"]),
            "yes" if s["paused"] else "no",
            str(s["reason"] or ""),
            win,
            str(s.get("held_subjects", 0)),
        )
    console.print(table)


SystemsConfig = Annotated[
    str | None,
    typer.Option("--config", help="systems.yaml (default: $Q2C_SYSTEMS_CONFIG, else the sandbox)"),
]


def load_systems(config: str | None, sandbox: str) -> Any:
    """The configured connectors: a systems.yaml, or the running sandbox."""
    import os

    from quote2cash.connectors import registry

    path = config or os.environ.get("Q2C_SYSTEMS_CONFIG")
    try:
        return registry.from_file(path) if path else registry.from_sandbox(sandbox)
    except registry.SystemsConfigError as exc:
        fail(str(exc))


@catalog_app.command("check")
def catalog_check(
    path: Annotated[str, typer.Argument(help="catalog YAML, e.g. config/catalog.yaml")],
    offline: Annotated[bool, typer.Option(help="Only validate the file")] = False,
    config: SystemsConfig = None,
    sandbox: SandboxDir = ".q2c/sandbox",
) -> None:
    """Validate the catalog; unless --offline, report every item and price the systems lack."""
    from contextlib import asynccontextmanager
    from pathlib import Path

    from quote2cash.masterdata.cli import run_check

    @asynccontextmanager
    async def provider():  # type: ignore[no-untyped-def]
        systems = load_systems(config, sandbox)
        async with systems:
            yield systems.crm, systems.erp, systems.billing

    run_check(Path(path), None if offline else provider)


@systems_app.command("check")
def systems_check(config: SystemsConfig = None, sandbox: SandboxDir = ".q2c/sandbox") -> None:
    """Call each configured system: reachable? credentials accepted? (exit 1 if not)."""
    from quote2cash.connectors.registry import check_all

    systems = load_systems(config, sandbox)

    async def run() -> list[Any]:
        async with systems:
            return await check_all(systems)

    results = asyncio.run(run())
    table = DataTable("role", "reachable", "authenticated", "latency", "detail")
    for r in results:
        table.add_row(
            r.system,
            _yes_no(r.reachable),
            _yes_no(r.authenticated),
            f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "-",
            r.detail,
        )
    console.print(table)
    if not all(r.reachable and r.authenticated for r in results):
        raise typer.Exit(1)


@sandbox_app.command("up")
def sandbox_up(workdir: SandboxDir = ".q2c/sandbox") -> None:
    """Start the Stripe and Salesforce emulators and a Tryton ERP; print where they listen."""
    from pathlib import Path

    from quote2cash.sandbox.orchestrator import SandboxError, up

    try:
        with console.status("starting the sandbox") as spinner:
            described = up(Path(workdir), progress=lambda msg: spinner.update(msg))
    except SandboxError as exc:
        fail(str(exc))
    _print_sandbox(described, workdir)


@sandbox_app.command("status")
def sandbox_status(workdir: SandboxDir = ".q2c/sandbox") -> None:
    """Where each sandbox system listens and whether it runs."""
    from pathlib import Path

    from quote2cash.sandbox.orchestrator import status

    described = status(Path(workdir))
    if not described:
        fail(f"no sandbox in {workdir}; start one with `q2c sandbox up`", code=1)
    _print_sandbox(described, workdir)
    if not all(s["running"] for s in described.values()):
        raise typer.Exit(1)


@sandbox_app.command("down")
def sandbox_down(workdir: SandboxDir = ".q2c/sandbox") -> None:
    """Stop every sandbox system."""
    from pathlib import Path

    from quote2cash.sandbox.orchestrator import down

    stopped = down(Path(workdir))
    console.print(escape(f"stopped: {', '.join(stopped) or 'nothing was running'}"))


def _print_sandbox(described: dict[str, Any], workdir: str) -> None:
    table = DataTable("system", "listens on", "running")
    for name, info in described.items():
        table.add_row(name, info["url"], _yes_no(info["running"]))
    console.print(table)
    console.print(escape(f"credentials: {workdir}/state.json (mode 0600)"))


@app.command()
def demo(
    quick: Annotated[bool, typer.Option(help="A smaller run, for CI")] = False,
    workdir: Annotated[str, typer.Option(help="Where the demo keeps its store")] = ".q2c/demo",
    engine_only: Annotated[
        bool, typer.Option("--engine-only", help="The engine's guarantees on simulated systems")
    ] = False,
) -> None:
    """Run the quote-to-cash demo on the sandbox end to end and print a summary."""
    if engine_only:
        from quote2cash.demo.engine_demo import run_demo
    else:
        from quote2cash.demo import run_demo

    ok = run_demo(workdir=workdir, quick=quick, console=console)
    if not ok:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> Any:
    try:
        return app(argv)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
