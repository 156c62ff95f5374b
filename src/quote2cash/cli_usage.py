"""``q2c usage``: ingest usage files (or watch a drop folder), list batch receipts, and work
the usage quarantine (list, show, correct, resubmit)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quote2cash.cli_identity import TokenOption
from quote2cash.cli_text import FormatOption, OutputFormat, as_json_value, show_records

if TYPE_CHECKING:
    from quote2cash.engine.runtime import Runtime
    from quote2cash.usage.intake import BatchReceipt, UsageIntake

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
SourceOption = Annotated[
    str, typer.Option("--source", help="Where the records come from; ids are unique per source")
]
CorrectionsOption = Annotated[
    bool,
    typer.Option(
        "--corrections", help="A record id seen before with new values amends it (audited)"
    ),
]

usage_app = typer.Typer(
    help="Usage records: ingest, batch receipts, quarantine.", no_args_is_help=True
)
quarantine_app = typer.Typer(
    help="Usage records intake refused: list, show, correct, resubmit.", no_args_is_help=True
)
usage_app.add_typer(quarantine_app, name="quarantine")

BATCH_COLUMNS = (
    "batch_id",
    "source",
    "origin",
    "part",
    "records",
    "accepted",
    "duplicate",
    "quarantined",
    "corrected",
    "submitted_by",
    "received_at",
)


def register(app: typer.Typer) -> None:
    app.add_typer(usage_app, name="usage")


def _actor(runtime: Runtime, token: str | None) -> str:
    """The token's operator when one is given, else the CLI user (intake is not a decision)."""
    from quote2cash.cli_identity import acting_operator, cli_client

    return acting_operator(runtime, token).name if token else cli_client()


def _intake(runtime: Runtime) -> UsageIntake:
    from quote2cash.usage.intake import intake_for

    return intake_for(runtime.engine, runtime.clock)


def _show_receipts(receipts: list[BatchReceipt], output: OutputFormat) -> None:
    from quote2cash.cli import console

    rows = [r.as_dict() for r in receipts]
    show_records(console, rows, (*BATCH_COLUMNS[:-2], "content_sha256"), output)


@usage_app.command("ingest")
def ingest(
    files: Annotated[list[Path], typer.Argument(help="CSV, JSON Lines or Parquet files")],
    source: SourceOption = "files",
    corrections: CorrectionsOption = False,
    file_format: Annotated[
        str | None,
        typer.Option("--file-format", help="csv, jsonl or parquet (default: from the suffix)"),
    ] = None,
    db: DbOption = None,
    token: TokenOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Validate, deduplicate and commit usage files; one receipt per batch (chunk)."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.usage.reading import UsageFileError

    runtime = open_runtime(db)
    intake = _intake(runtime)
    receipts: list[BatchReceipt] = []
    try:
        actor = _actor(runtime, token)
        for path in files:
            receipts.extend(
                intake.ingest_file(
                    path, source=source, actor=actor, corrections=corrections, fmt=file_format
                )
            )
    except (UsageFileError, OSError) as exc:
        fail(f"usage ingest: {exc}", code=1)
    finally:
        intake.close()
    _show_receipts(receipts, output)


@usage_app.command("watch")
def watch(
    folder: Annotated[Path, typer.Argument(help="The drop folder to watch")],
    source: SourceOption = "drop",
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between scans")
    ] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Scan once and exit")] = False,
    db: DbOption = None,
    token: TokenOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Ingest usage files dropped into FOLDER (each moves to done/ or failed/ after)."""
    from quote2cash.cli import open_runtime
    from quote2cash.usage.watch import watch_once

    runtime = open_runtime(db)
    intake = _intake(runtime)
    actor = _actor(runtime, token)
    try:
        while True:
            receipts = watch_once(intake, folder, source=source, actor=actor)
            if receipts or once:
                _show_receipts(receipts, output)
            if once:
                return
            time.sleep(interval)
    finally:
        intake.close()


@usage_app.command("batches")
def batches(
    source: Annotated[str | None, typer.Option("--source", help="Only this source")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    db: DbOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Batch receipts, newest first: content hash, who, counts, correlation id."""
    from quote2cash.cli import console, open_runtime
    from quote2cash.usage.intake import list_batches

    runtime = open_runtime(db)
    rows = list_batches(runtime.engine, limit=limit, source=source)
    show_records(
        console, rows, (*BATCH_COLUMNS, "content_sha256", "correlation_id", "ledger_file"), output
    )


QUARANTINE_COLUMNS = ("id", "source", "record_id", "field", "reason", "status", "batch_id")


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option("--status", help="held, resubmitted or all")] = "held",
    batch: Annotated[str | None, typer.Option("--batch", help="Only this batch")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    db: DbOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Quarantined usage records with the field and reason they were refused for."""
    from quote2cash.cli import console, fail, open_runtime
    from quote2cash.usage.quarantine import UsageQuarantine, UsageQuarantineError

    runtime = open_runtime(db)
    intake = _intake(runtime)
    try:
        rows = UsageQuarantine(intake).records(
            status=None if status == "all" else status, batch_id=batch, limit=limit
        )
    except UsageQuarantineError as exc:
        fail(str(exc))
    finally:
        intake.close()
    show_records(console, [r.as_dict() for r in rows], QUARANTINE_COLUMNS, output)


@quarantine_app.command("show")
def quarantine_show(
    ident: Annotated[int, typer.Argument(help="Quarantined record id")],
    db: DbOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """One quarantined record: as sent, its correction, why it was refused."""
    from quote2cash.cli import console, fail, open_runtime
    from quote2cash.usage.quarantine import UsageQuarantine, UsageQuarantineError

    runtime = open_runtime(db)
    intake = _intake(runtime)
    try:
        record = UsageQuarantine(intake).show(ident).as_dict()
    except UsageQuarantineError as exc:
        fail(str(exc))
    finally:
        intake.close()
    if OutputFormat(output) is OutputFormat.json:
        typer.echo(json.dumps(as_json_value(record), indent=2, default=str))
        return
    rows = [
        {"field": k, "value": json.dumps(v, default=str) if isinstance(v, dict) else v}
        for k, v in record.items()
    ]
    show_records(console, rows, ("field", "value"), output)


@quarantine_app.command("correct")
def quarantine_correct(
    ident: Annotated[int, typer.Argument(help="Quarantined record id")],
    changes: Annotated[
        list[str], typer.Argument(help="FIELD=VALUE pairs (FIELD= removes the field)")
    ],
    note: Annotated[str | None, typer.Option("--note", help="Why (kept in the audit log)")] = None,
    db: DbOption = None,
    token: TokenOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Correct a held record's fields before resubmitting it (audited, as your token's owner)."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.cli_identity import acting_operator
    from quote2cash.usage.quarantine import UsageQuarantine, UsageQuarantineError

    parsed: dict[str, Any] = {}
    for pair in changes:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"correction {pair!r}: expected FIELD=VALUE (e.g. quantity=12)")
        parsed[name.strip()] = value if value != "" else None
    runtime = open_runtime(db)
    operator = acting_operator(runtime, token)
    intake = _intake(runtime)
    try:
        record = UsageQuarantine(intake).correct(ident, parsed, by=operator, note=note)
    except UsageQuarantineError as exc:
        fail(str(exc))
    finally:
        intake.close()
    quarantine_show_record(record.as_dict(), output)


def quarantine_show_record(record: dict[str, Any], output: OutputFormat) -> None:
    from quote2cash.cli import console

    if OutputFormat(output) is OutputFormat.json:
        typer.echo(json.dumps(as_json_value(record), indent=2, default=str))
        return
    show_records(console, [record], (*QUARANTINE_COLUMNS, "corrected"), output)


@quarantine_app.command("resubmit")
def quarantine_resubmit(
    idents: Annotated[list[int], typer.Argument(help="Quarantined record ids")],
    db: DbOption = None,
    token: TokenOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Send held records (as corrected) through intake again, as your token's owner."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.cli_identity import acting_operator
    from quote2cash.usage.quarantine import UsageQuarantine, UsageQuarantineError

    runtime = open_runtime(db)
    operator = acting_operator(runtime, token)
    intake = _intake(runtime)
    try:
        receipts = UsageQuarantine(intake).resubmit(idents, by=operator)
    except UsageQuarantineError as exc:
        fail(str(exc))
    finally:
        intake.close()
    _show_receipts(receipts, output)
