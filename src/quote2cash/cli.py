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

from quote2cash.cli_identity import TokenOption, acting_operator
from quote2cash.cli_text import FormatOption, OutputFormat, escape, show_records
from quote2cash.engine.control import ControlError
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import IdentityError
from quote2cash.settings import get_settings

app = typer.Typer(
    help="quote2cash: the quote-to-cash integration hub.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
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


def _exception_commands() -> None:
    from quote2cash.cli_exceptions import register

    register(app, dlq_app)


_api_commands()
_exception_commands()


def _reconcile_commands() -> None:
    from quote2cash.reconcile.cli import register

    register(app)


_reconcile_commands()


def _audit_commands() -> None:
    from quote2cash.cli_audit import register

    register(audit_app)


_audit_commands()


def _kpi_commands() -> None:
    from quote2cash.cli_kpis import register

    register(app)


_kpi_commands()


def _archive_commands() -> None:
    from quote2cash.cli_archive import register

    register(app)


_archive_commands()


def _config_commands() -> None:
    from quote2cash.config_cli import config_app

    app.add_typer(config_app, name="config")


_config_commands()


def _customer_commands() -> None:
    from quote2cash.cli_customers import customers_app

    app.add_typer(customers_app, name="customers")


_customer_commands()


def _bus_commands() -> None:
    from quote2cash.cli_bus import register

    register(app)


_bus_commands()


def _usage_commands() -> None:
    from quote2cash.cli_usage import register, usage_app
    from quote2cash.cli_usage_explain import register as register_explain

    register_explain(usage_app)
    register(app)


_usage_commands()

_debug = False


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error (or Q2C_DEBUG=1)")
    ] = False,
) -> None:
    """quote2cash: the quote-to-cash integration hub."""
    global _debug
    _debug = debug


def debug_enabled() -> bool:
    """Whether errors show their traceback: ``--debug`` or ``Q2C_DEBUG=1``."""
    import os

    return _debug or os.environ.get("Q2C_DEBUG", "").lower() in ("1", "true", "yes")


# No emoji codes: data such as a chain name ``worker:a`` followed by ``:`` must print verbatim.
console = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]


SandboxDir = Annotated[str, typer.Option("--workdir", help="Where the sandbox keeps its state")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one error line (escaped, secrets redacted) and exit with ``code``."""
    from quote2cash.observability.redact import redact

    err.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False)
    raise typer.Exit(code)


def open_runtime(db: str | None, *, initialise: bool = False) -> Runtime:
    settings = get_settings()
    url = db or settings.database_url
    try:
        rt = Runtime.open(
            url, initialise=initialise, sqlite_synchronous=settings.sqlite_synchronous
        )
    except Exception as exc:
        from quote2cash.cli_errors import store_failure

        fail(store_failure(exc, url))
    if not initialise:
        from quote2cash.store.db import is_initialised

        if not is_initialised(rt.engine):
            fail("the store is not initialised; run `q2c init` first")
    _OPENED.append((rt, _audit_seq(rt)))
    return rt


_OPENED: list[tuple[Runtime, int | None]] = []
"""Stores this command opened, with their audit head then: decisions it audited are sealed by a
checkpoint before the command exits (a worker's checkpointer may not be running)."""


def _audit_seq(rt: Runtime) -> int | None:
    from quote2cash.engine.audit import read_head

    try:
        with rt.engine.connect() as conn:
            head = read_head(conn)
    except Exception:  # an uninitialised store has no head yet
        return None
    return None if head is None else head.seq


def seal_audited_decisions() -> None:
    """Checkpoint the audit head of every store whose log this command extended."""
    from quote2cash.engine.checkpoints import checkpoint_now

    while _OPENED:
        rt, before = _OPENED.pop()
        after = _audit_seq(rt)
        if after is None or after == before:
            continue
        try:
            checkpoint_now(rt)
        except Exception as exc:
            err.print(
                f"[yellow]warning:[/] audit checkpoint not written ({escape(type(exc).__name__)});"
                " `q2c audit checkpoint` writes one",
                highlight=False,
            )


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
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 5000,
    once: Annotated[bool, typer.Option(help="Drain what is ready now, then exit")] = False,
    lease_seconds: Annotated[
        float,
        typer.Option(
            envvar="Q2C_WORKER_LEASE_SECONDS",
            min=1.0,
            help="A claimed subject's lease, renewed every third of it while it runs: a killed "
            "worker's subjects go to the others within it",
        ),
    ] = 60.0,
    max_subjects: Annotated[
        int,
        typer.Option(
            envvar="Q2C_WORKER_MAX_SUBJECTS",
            min=1,
            max=100_000,
            help="Subjects one batch claims at most (lower it so several workers share few "
            "busy subjects)",
        ),
    ] = 1000,
    refill_seconds: Annotated[
        float,
        typer.Option(
            envvar="Q2C_WORKER_REFILL_SECONDS",
            min=0.0,
            help="While a batch runs, claim newly ready subjects this often, so subjects "
            "waiting on a slow system (the ERP) do not hold the others back (0: a batch ends "
            "when its last subject does)",
        ),
    ] = 0.5,
    parent_pid: Annotated[
        int | None,
        typer.Option(
            "--parent-pid",
            hidden=True,
            help="Stop (finishing the batch) once this parent process is gone: q2c serve's "
            "worker child",
        ),
    ] = None,
) -> None:
    """Run a worker: events are handled in order per subject until SIGTERM or Ctrl-C. Run as
    many as you like on one PostgreSQL store: subjects are leased to one worker at a time."""
    from contextlib import AsyncExitStack

    from quote2cash.engine.niceness import enter_idle_class, lower_process_priority
    from quote2cash.engine.worker import Worker, raise_worker_gc_threshold
    from quote2cash.observability.logging import configure_logging

    settings = get_settings()
    lower_process_priority(settings.worker_nice)  # every thread, now and started later
    idle_class = settings.worker_idle_class
    if idle_class is None:
        idle_class = parent_pid is not None  # serve's worker child shares serve's cores
    if idle_class:
        enter_idle_class()
    raise_worker_gc_threshold()  # a worker-only process: fewer young collections
    configure_logging(settings.log_level, settings.log_format)
    rt = open_runtime(db)
    configure_budgets(rt, config)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            if handlers == "flows":
                from quote2cash.configuration import active_config_dir
                from quote2cash.flows import build_registry
                from quote2cash.flows.deps import FlowDeps
                from quote2cash.masterdata import ConfigError

                systems = await stack.enter_async_context(load_systems(config, sandbox))
                try:
                    deps = FlowDeps.build(rt, systems, active_config_dir())
                except ConfigError as exc:
                    fail(f"{exc} (check it with `q2c config check`)")
                registry = build_registry(deps)
            else:
                registry = load_registry(handlers)
            w = Worker(
                rt,
                registry,
                batch_size=batch_size,
                lease_seconds=lease_seconds,
                max_subjects=max_subjects,
                refill_seconds=refill_seconds or None,
            )
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
            if parent_pid is not None:
                from quote2cash.api.worker_child import stop_when_parent_ends

                watch = asyncio.create_task(stop_when_parent_ends(parent_pid, stop))
                stack.callback(watch.cancel)
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
    after: Annotated[
        int | None,
        typer.Option(help="Oldest first, from just after this log position (page forward)", min=0),
    ] = None,
    before: Annotated[
        int | None,
        typer.Option(help="Newest first, from just before this log position (next page)", min=1),
    ] = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """The newest events, optionally filtered; paged by log position (--before the last shown,
    or --after to read the log forward)."""
    from dataclasses import asdict

    from quote2cash.engine.queries import list_events

    if after is not None and before is not None:
        raise typer.BadParameter("--after and --before exclude each other; give one")
    rows = list_events(
        open_runtime(db),
        status=status,
        subject=subject,
        correlation_id=correlation_id,
        limit=limit,
        after=after,
        before=before,
    )

    def parked(r: dict[str, Any]) -> str:
        if not (r["parked_on"] and r["park_deadline"]):
            return ""
        return f"{r['parked_on']}: {r['park_reason']} (until {r['park_deadline']:%Y-%m-%d %H:%M}Z)"

    columns = ("pos", "id", "type", "subject", "sequence", "status", "attempts", "correlation_id")
    show_records(
        console,
        [asdict(r) for r in rows],
        (*columns, "parked_on", "park_reason", "park_deadline")
        if output is OutputFormat.json
        else (*columns, "parked_on"),
        output,
        display={"parked_on": parked},
    )


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
    output: FormatOption = OutputFormat.table,
) -> None:
    """Events waiting for a person: permanent failures and exhausted retries, with reasons."""
    from quote2cash.engine.queries import failed_events

    if kind not in (None, "exception", "dead"):
        fail(f"--kind must be 'exception' or 'dead', not {kind!r}")
    rows = failed_events(open_runtime(db), kind)
    records = [
        {
            "id": r.id,
            "type": r.type,
            "subject": r.subject,
            "queue": r.status,
            "category": r.category,
            "attempts": r.attempts,
            "reason": r.last_error,
            "correlation_id": r.correlation_id,
        }
        for r in rows
    ]
    show_records(
        console,
        records,
        ("id", "type", "subject", "queue", "category", "attempts", "reason")
        if output is OutputFormat.table
        else tuple(records[0])
        if records
        else (),
        output,
    )
    if output is OutputFormat.table:
        console.print(f"{len(rows)} event(s) waiting")


@replay_app.command("request")
def replay_request(
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log)")],
    event_id: Annotated[list[str] | None, typer.Option("--event-id")] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, exclusive")] = None,
    include_processed: Annotated[bool, typer.Option("--include-processed")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the exact events it would take")
    ] = False,
    db: DbOption = None,
    token: TokenOption = None,
    output: FormatOption = OutputFormat.table,
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
    if dry_run:
        show_replay_preview(runtime, selector, output)
        return
    by = acting_operator(runtime, token)
    try:
        req = request_replay(runtime, selector, by=by, reason=reason)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    sensitive = " (finance-sensitive: needs a finance_approver)" if req.finance_sensitive else ""
    console.print(f"replay request [bold]{req.id}[/] for {req.event_count} event(s){sensitive}")


def show_replay_preview(runtime: Runtime, selector: Any, output: OutputFormat) -> None:
    """The exact events a replay request for ``selector`` would pin now."""
    from quote2cash.engine.exceptions import preview_bulk_replay

    try:
        preview = preview_bulk_replay(runtime, selector)
    except ControlError as exc:
        fail(str(exc))
    records = [
        {
            "pos": e.pos,
            "id": e.id,
            "type": e.type,
            "subject": e.subject,
            "status": e.status,
            "finance_sensitive": e.finance_sensitive,
        }
        for e in preview
    ]
    show_records(
        console, records, ("pos", "id", "type", "subject", "status", "finance_sensitive"), output
    )
    if OutputFormat(output) is OutputFormat.table:
        console.print(f"dry run: a request would take these {len(preview)} event(s)")


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
def replay_list(
    db: DbOption = None, status: str | None = None, output: FormatOption = OutputFormat.table
) -> None:
    """Replay requests and their decisions."""
    from quote2cash.engine.replay import list_requests

    records = [
        {
            "id": r.id,
            "status": r.status,
            "events": r.event_count,
            "finance_sensitive": r.finance_sensitive,
            "requested_by": r.requested_by,
            "decided_by": r.decided_by,
            "reason": r.reason,
            "decision_note": r.decision_note,
        }
        for r in list_requests(open_runtime(db), status)
    ]
    columns = ("id", "status", "events", "finance_sensitive", "requested_by", "decided_by")
    show_records(
        console,
        records,
        (*columns, "reason", "decision_note")
        if output is OutputFormat.json
        else (*columns, "reason"),
        output,
        display={"finance_sensitive": lambda r: "yes" if r["finance_sensitive"] else ""},
    )


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
def systems_status(db: DbOption = None, output: FormatOption = OutputFormat.table) -> None:
    """Paused systems, maintenance windows and how many subjects wait on each."""
    from quote2cash.engine.control import system_status

    def windows(s: dict[str, Any]) -> str:
        return "; ".join(
            f"{w['starts_at']:%Y-%m-%d %H:%M}→{w['ends_at']:%H:%M}"
            + (" (now)" if w["in_force"] else "")
            for w in s.get("windows") or []
        )

    records = [
        {**s, "held_subjects": s.get("held_subjects", 0)} for s in system_status(open_runtime(db))
    ]
    show_records(
        console,
        records,
        ("system", "paused", "reason", "changed_by", "windows", "held_subjects")
        if output is OutputFormat.json
        else ("system", "paused", "reason", "windows", "held_subjects"),
        output,
        display={"paused": lambda s: "yes" if s["paused"] else "no", "windows": windows},
    )


SystemsConfig = Annotated[
    str | None,
    typer.Option("--config", help="systems.yaml (default: $Q2C_SYSTEMS_CONFIG, else the sandbox)"),
]


def load_systems(config: str | None, sandbox: str) -> Any:
    """The configured connectors: a systems.yaml, or the running sandbox."""
    import os

    from quote2cash.connectors import registry
    from quote2cash.sandbox.systems import systems_from_sandbox

    path = config or os.environ.get("Q2C_SYSTEMS_CONFIG")
    try:
        return registry.from_file(path) if path else systems_from_sandbox(sandbox)
    except registry.SystemsConfigError as exc:
        fail(str(exc))


def configure_budgets(rt: Runtime, config: str | None) -> None:
    """The API budgets of the systems.yaml in use, shared through the store by every process."""
    import os

    from quote2cash.connectors import registry

    path = config or os.environ.get("Q2C_SYSTEMS_CONFIG")
    if not path:
        return
    try:
        rt.gates.configure_budgets(registry.budgets_from_file(path))
    except registry.SystemsConfigError as exc:
        fail(str(exc))


@catalog_app.command("check")
def catalog_check(
    path: Annotated[
        str | None,
        typer.Argument(help="catalog YAML (default: catalog.yaml of the configuration in use)"),
    ] = None,
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

    from quote2cash.configuration import active_config_dir

    catalog = Path(path) if path else active_config_dir() / "catalog.yaml"
    run_check(catalog, None if offline else provider)


BUDGET_COLUMNS = (
    "budget",
    "tokens",
    "updated_at",
    "day_used",
    "day_started",
    "blocked_until",
    "slots_held",
    "slots",
)


@systems_app.command("budgets")
def systems_budgets(db: DbOption = None, output: FormatOption = OutputFormat.table) -> None:
    """The API budgets every hub process shares (PostgreSQL): tokens, day used, Retry-After
    holds, concurrency slots held."""
    from quote2cash.engine.budgets import backend_for

    rt = open_runtime(db)
    backend = backend_for(rt.engine)
    if not backend.shared:
        err.print(
            "budgets are kept in each worker's memory on SQLite (one process calls out); "
            "nothing is shared to show",
            highlight=False,
        )
    records = backend.describe()

    def when(key: str) -> Any:
        return lambda r: f"{r[key]:%Y-%m-%d %H:%M:%S}" if r[key] else ""

    show_records(
        console,
        records,
        BUDGET_COLUMNS,
        output,
        display={
            "tokens": lambda r: f"{r['tokens']:.2f}",
            "updated_at": when("updated_at"),
            "day_started": when("day_started"),
            "blocked_until": when("blocked_until"),
        },
    )


@systems_app.command("check")
def systems_check(
    config: SystemsConfig = None,
    sandbox: SandboxDir = ".q2c/sandbox",
    output: FormatOption = OutputFormat.table,
) -> None:
    """Call each configured system: reachable? credentials accepted? (exit 1 if not)."""
    from quote2cash.connectors.registry import check_all

    systems = load_systems(config, sandbox)

    async def run() -> list[Any]:
        async with systems:
            return await check_all(systems)

    results = asyncio.run(run())
    records = [
        {
            "role": r.system,
            "reachable": r.reachable,
            "authenticated": r.authenticated,
            "latency_ms": r.latency_ms,
            "detail": r.detail,
        }
        for r in results
    ]
    show_records(
        console,
        records,
        ("role", "reachable", "authenticated", "latency_ms", "detail"),
        output,
        display={
            "latency_ms": lambda r: "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f} ms"
        },
    )
    if not all(r.reachable and r.authenticated for r in results):
        raise typer.Exit(1)


@sandbox_app.command("up")
def sandbox_up(
    workdir: SandboxDir = ".q2c/sandbox",
    output: FormatOption = OutputFormat.table,
    erp: Annotated[
        str,
        typer.Option(
            "--erp", help="tryton, or legacy: the legacy ERP (SOAP + batch files) instead"
        ),
    ] = "tryton",
) -> None:
    """Start the Stripe and Salesforce emulators and an ERP; print where they listen."""
    from pathlib import Path

    from quote2cash.sandbox.orchestrator import SandboxError, up

    try:
        with console.status("starting the sandbox") as spinner:
            described = up(Path(workdir), erp=erp, progress=lambda msg: spinner.update(msg))
    except SandboxError as exc:
        fail(str(exc))
    _print_sandbox(described, workdir, output)


@sandbox_app.command("status")
def sandbox_status(
    workdir: SandboxDir = ".q2c/sandbox",
    credentials: Annotated[
        bool,
        typer.Option("--credentials", help="Also print each system's URL, user and secrets"),
    ] = False,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Where each sandbox system listens and whether it runs (exit 1 if one does not)."""
    from pathlib import Path

    from quote2cash.sandbox.orchestrator import sandbox_credentials, status

    described = status(Path(workdir))
    if not described:
        fail(f"no sandbox in {workdir}; start one with `q2c sandbox up`", code=1)
    if credentials:
        records = [
            {"system": system, "field": field, "value": value}
            for system, fields in sandbox_credentials(Path(workdir)).items()
            for field, value in fields.items()
        ]
        show_records(console, records, ("system", "field", "value"), output)
    else:
        _print_sandbox(described, workdir, output)
    if not all(s["running"] for s in described.values()):
        raise typer.Exit(1)


@sandbox_app.command("down")
def sandbox_down(workdir: SandboxDir = ".q2c/sandbox") -> None:
    """Stop every sandbox system."""
    from pathlib import Path

    from quote2cash.sandbox.orchestrator import down

    stopped = down(Path(workdir))
    console.print(escape(f"stopped: {', '.join(stopped) or 'nothing was running'}"))


def _print_sandbox(described: dict[str, Any], workdir: str, output: OutputFormat) -> None:
    records = [
        {"system": name, "url": info["url"], "running": info["running"]}
        for name, info in described.items()
    ]
    show_records(console, records, ("system", "url", "running"), output)
    if output is OutputFormat.table:
        console.print(
            escape(f"credentials: q2c sandbox status --credentials --workdir {workdir}"),
            highlight=False,
        )


@app.command()
def demo(
    quick: Annotated[bool, typer.Option(help="A smaller run, for CI")] = False,
    workdir: Annotated[str, typer.Option(help="Where the demo keeps its store")] = ".q2c/demo",
    engine_only: Annotated[
        bool, typer.Option("--engine-only", help="The engine's guarantees on simulated systems")
    ] = False,
    erp: Annotated[
        str, typer.Option("--erp", help="tryton, or legacy: the legacy ERP (SOAP + batch files)")
    ] = "tryton",
) -> None:
    """Run the quote-to-cash demo on the sandbox end to end and print a summary."""
    if engine_only:
        from quote2cash.demo.engine_demo import run_demo as engine_demo

        ok = engine_demo(workdir=workdir, quick=quick, console=console)
    else:
        from quote2cash.demo import run_demo

        if erp not in ("tryton", "legacy"):
            fail(f"--erp is {erp!r}; expected tryton or legacy")
        ok = run_demo(workdir=workdir, quick=quick, console=console, erp=erp)
    if not ok:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> Any:
    """The ``q2c`` entry point: files it creates are 0600, secrets never logged, and an error
    is one line saying what to do (its traceback only with ``--debug``). Arrow's allocator
    settings are made first, before anything loads ``pyarrow`` (``quote2cash.allocator``)."""
    from quote2cash.allocator import configure_allocator

    configure_allocator()
    from quote2cash.cli_errors import describe_failure
    from quote2cash.observability import tracing
    from quote2cash.observability.redact import install_redaction
    from quote2cash.private_files import restrict_process_umask

    restrict_process_umask()
    install_redaction()
    try:
        tracing.configure()
        return app(argv)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if debug_enabled():
            raise
        err.print(f"[bold red]error:[/] {escape(describe_failure(exc))}", highlight=False)
        sys.exit(2)
    finally:
        seal_audited_decisions()
        tracing.shutdown()


if __name__ == "__main__":
    # `python -m quote2cash.cli` runs this file as __main__; the commands import
    # quote2cash.cli, so run that module's main (one module, one list of opened stores).
    from quote2cash.cli import main as cli_main

    cli_main()
