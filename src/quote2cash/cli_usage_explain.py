"""``q2c usage explain``: a metered invoice line down to the usage records behind it.

``register(usage_app)`` adds the command to the ``q2c usage`` group (intake's commands live
beside it in their own module)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quote2cash.cli_text import print_table as print_wide
from quote2cash.engine.errors import IntegrationError

console = Console()

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="systems.yaml (default: $Q2C_SYSTEMS_CONFIG, else the sandbox)"),
]
SandboxOption = Annotated[str, typer.Option("--workdir", help="The sandbox's folder")]
FormatOption = Annotated[str, typer.Option("--format", help="table or json")]


def explain_command(
    invoice_line: Annotated[
        str,
        typer.Argument(
            metavar="INVOICE_LINE",
            help="Billing's invoice line id (il_...), or INVOICE_ID#LINE_NUMBER (1-based)",
        ),
    ],
    format: FormatOption = "table",
    db: DbOption = None,
    config: ConfigOption = None,
    sandbox: SandboxOption = ".q2c/sandbox",
) -> None:
    """List the aggregates posted into a metered invoice line, their batches and records, and
    whether the records' quantity x unit price is the line's amount to the cent (exit 1 if not)."""
    from quote2cash.cli import fail, load_systems, open_runtime
    from quote2cash.usage.explain import Explanation, explain
    from quote2cash.usage.postings import UsagePostings
    from quote2cash.usage.wiring import open_ledger

    if format not in ("table", "json"):
        fail(f"--format must be table or json, not {format!r}")
    runtime = open_runtime(db)
    try:
        ledger = open_ledger(runtime)
        if ledger is None:
            fail("no usage ledger is configured for this store (usage intake is not wired)")
        systems = load_systems(config, sandbox)
        if systems.billing is None:
            fail("no billing system is configured (systems.yaml or the sandbox)")

        async def run() -> Explanation:
            async with systems, runtime.gates.call("billing", "billing.usage_lines"):
                return await explain(
                    systems.billing, UsagePostings(runtime.engine), ledger, invoice_line
                )

        try:
            found = asyncio.run(run())
        except IntegrationError as exc:
            fail(str(exc))
    finally:
        runtime.close()
    if format == "json":
        typer.echo(json.dumps(found.to_json(), indent=2))
    else:
        _print(found.to_json())
    if not found.agrees:
        raise typer.Exit(1)


def _print(data: dict[str, Any]) -> None:
    line = data["line"]
    console.print(
        escape(
            f"invoice {line['invoice']} ({line['invoice_number'] or '-'}) line {line['position']} "
            f"{line['line']}: {line['meter']} of {line['subscription']}, {line['period_start']} - "
            f"{line['period_end']}: {line['quantity']} x {line['unit_amount']} = "
            f"{line['amount']} {line['currency']}"
        ),
        highlight=False,
    )
    table = Table("aggregate", "version", "outcome", "posted", "batches", "records")
    for agg in data["aggregates"]:
        table.add_row(
            escape(agg["aggregate_id"]),
            str(agg["version"]),
            agg["outcome"],
            agg["posted_quantity"],
            escape(", ".join(agg["batches"])),
            str(len(agg["records"])),
        )
    print_wide(console, table)
    verdict = "[green bold]agrees[/]" if data["agrees"] else "[red bold]DOES NOT AGREE[/]"
    console.print(
        f"records: {escape(data['records_quantity'])} -> {escape(data['records_amount'])} "
        f"{escape(line['currency'])}; line: {escape(line['quantity'])} -> "
        f"{escape(line['amount'])}: {verdict}",
        highlight=False,
    )


def register(usage_app: typer.Typer) -> None:
    """Add ``explain`` to the ``q2c usage`` group."""
    usage_app.command("explain")(explain_command)
