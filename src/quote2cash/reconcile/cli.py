"""``q2c reconcile``: the three-way report, and ``repair DRIFT_ID`` to file its replay."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from quote2cash.engine.control import ControlError
from quote2cash.engine.errors import IntegrationError
from quote2cash.reconcile.model import Report
from quote2cash.reconcile.render import FORMATS, as_csv, as_json, print_table
from quote2cash.reconcile.repair import file_repair
from quote2cash.reconcile.run import reconcile
from quote2cash.usage.wiring import open_ledger

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="Q2C_TOKEN",
        show_envvar=True,
        help="Your API token; the request is filed as its owner",
    ),
]

reconcile_app = typer.Typer(
    help="Three-way reconciliation of CRM, billing and ERP.", invoke_without_command=True
)
console = Console()

SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only objects created since (ISO date or time, UTC)")
]
DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="systems.yaml (default: $Q2C_SYSTEMS_CONFIG, else the sandbox)"),
]
SandboxOption = Annotated[str, typer.Option("--workdir", help="The sandbox's folder")]


def _run(db: str | None, config: str | None, sandbox: str, since: str | None) -> Report:
    from quote2cash.cli import fail, load_systems, open_runtime, parse_time

    cut = parse_time(f"{since}T00:00:00+00:00" if since and "T" not in since else since, "--since")
    runtime = open_runtime(db)
    systems = load_systems(config, sandbox)

    async def run() -> Report:
        async with systems:
            return await reconcile(runtime, systems, since=cut, usage_ledger=open_ledger(runtime))

    try:
        return asyncio.run(run())
    except IntegrationError as exc:
        fail(f"reconciliation could not read the systems: {exc}")
    finally:
        runtime.close()


@reconcile_app.callback()
def reconcile_command(
    ctx: typer.Context,
    since: SinceOption = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    db: DbOption = None,
    config: ConfigOption = None,
    sandbox: SandboxOption = ".q2c/sandbox",
) -> None:
    """Read CRM, billing and ERP, report every drift and its proposed repair (exit 1 if any)."""
    from quote2cash.cli import fail

    if ctx.invoked_subcommand is not None:
        return
    if format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    report = _run(db, config, sandbox, since)
    if format == "json":
        typer.echo(as_json(report))
    elif format == "csv":
        typer.echo(as_csv(report), nl=False)
    else:
        print_table(report, console)
    if not report.clean:
        raise typer.Exit(1)


@reconcile_app.command("repair")
def repair_command(
    drift_id: Annotated[str, typer.Argument(help="A drift id from the report (D-...)")],
    db: DbOption = None,
    config: ConfigOption = None,
    sandbox: SandboxOption = ".q2c/sandbox",
    token: TokenOption = None,
) -> None:
    """Reconcile again and file the replay request that repairs DRIFT_ID (approved by another)."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.cli_identity import acting_operator
    from quote2cash.identity import IdentityError

    runtime = open_runtime(db)
    try:
        by = acting_operator(runtime, token)
        by.require("operator", "file a reconciliation repair")
        report = _run(db, config, sandbox, None)
        drift = report.find(drift_id)
        if drift is None:
            fail(f"drift {drift_id!r} is not in a fresh reconciliation (repaired, or mistyped)")
        request = file_repair(runtime, drift, by=by)
    except (ControlError, IdentityError) as exc:
        fail(str(exc))
    finally:
        runtime.close()
    sensitive = (
        " (finance-sensitive: needs a finance_approver)" if request.finance_sensitive else ""
    )
    console.print(
        f"replay request [bold]{request.id}[/] filed for {escape(drift.repair.describe())}"
        f"{sensitive}; another operator approves it with `q2c replay approve {request.id}`",
        highlight=False,
    )


def register(app: Any) -> None:
    app.add_typer(reconcile_app, name="reconcile")
