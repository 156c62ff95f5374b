"""``q2c archive``: move expired processed events to Parquet now; ``list`` the runs; ``restore``
one (checked against its manifest, the store's record and the audit log)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quote2cash.cli_text import FormatOption, OutputFormat, as_json_value, show_records

if TYPE_CHECKING:
    from quote2cash.engine.runtime import Runtime

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
DirOption = Annotated[
    str | None,
    typer.Option("--dir", help="Archive folder (default: $Q2C_ARCHIVE_DIR, or beside the store)"),
]

archive_app = typer.Typer(
    help="Retention: archive expired processed events to Parquet, list runs, restore one.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(archive_app, name="archive")


def _summary(record: Mapping[str, Any], output: OutputFormat) -> None:
    """One run's summary: a JSON object for machines, one line per figure for people."""
    from quote2cash.cli import console

    if OutputFormat(output) is OutputFormat.json:
        typer.echo(json.dumps(as_json_value(record), indent=2))
    else:
        rows = [{"figure": k.replace("_", " "), "value": v} for k, v in record.items()]
        show_records(console, rows, ("figure", "value"), output)


def _folder(runtime: Runtime, folder: str | None) -> Path:
    from quote2cash.retention.folder import archive_dir_for
    from quote2cash.settings import get_settings

    url = runtime.engine.url.render_as_string(hide_password=False)
    return archive_dir_for(url, folder or get_settings().archive_dir)


@archive_app.callback()
def archive_now(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what a run would take")
    ] = False,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Take only events older than this ISO time too (never one inside its period)",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help="At most this many events (default Q2C_ARCHIVE_MAX_EVENTS)"
        ),
    ] = None,
    folder: DirOption = None,
    db: DbOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Archive now the processed events older than their class's retention (Q2C_RETENTION_*)."""
    if ctx.invoked_subcommand is not None:
        return
    from quote2cash.cli import fail, open_runtime, parse_time
    from quote2cash.retention.archive import ArchiveError, run_archive
    from quote2cash.retention.policy import RetentionPolicy
    from quote2cash.settings import get_settings

    settings = get_settings()
    cutoff = parse_time(before, "--before")
    runtime = open_runtime(db)
    try:
        report = run_archive(
            runtime,
            _folder(runtime, folder),
            RetentionPolicy.from_settings(settings),
            before=cutoff,
            dry_run=dry_run,
            limit=limit or settings.archive_max_events,
            via="cli",
        )
    except (ArchiveError, OSError) as exc:
        fail(f"archive: {exc}", code=1)
    record = {
        "dry_run": report.dry_run,
        "run_id": report.run_id,
        "events": report.events,
        "steps": report.steps,
        "failures": report.failures,
        "finance_events": report.by_class.get("finance", 0),
        "other_events": report.by_class.get("other", 0),
        "pos_min": report.pos_min,
        "pos_max": report.pos_max,
        "file": str(_folder(runtime, folder) / report.file) if report.file else None,
        "sha256": report.sha256,
        "finance_cutoff": report.cutoffs.get("finance"),
        "other_cutoff": report.cutoffs.get("other"),
        "more": report.more,
    }
    _summary(record, output)


@archive_app.command("list")
def archive_list(db: DbOption = None, output: FormatOption = OutputFormat.table) -> None:
    """The archive runs of this store: file, SHA-256, events, pos range, restored when."""
    from quote2cash.cli import console, open_runtime
    from quote2cash.retention.restore import list_runs

    records = [
        {
            "id": r.id,
            "at": r.started_at,
            "via": r.via,
            "events": r.events,
            "steps": r.steps,
            "failures": r.failures,
            "pos": f"{r.pos_min}..{r.pos_max}",
            "file": r.file,
            "sha256": r.sha256,
            "restored_at": r.restored_at,
        }
        for r in list_runs(open_runtime(db))
    ]
    columns = ("id", "at", "via", "events", "steps", "failures", "pos", "file", "sha256")
    show_records(console, records, (*columns, "restored_at"), output)


@archive_app.command("restore")
def archive_restore(
    target: Annotated[str, typer.Argument(help="An archive .parquet file, or a run id")],
    folder: DirOption = None,
    db: DbOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Put an archive run's events back, same pos and ids, once checked.

    The file's SHA-256 must match its manifest, the manifest the store's record of the run, and
    each event's audit entries the audit log; then replay as usual."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.retention.restore import RestoreError, resolve, restore_archive

    runtime = open_runtime(db)
    try:
        path = resolve(runtime, _folder(runtime, folder), target)
        report = restore_archive(runtime, path, via="cli")
    except (RestoreError, OSError) as exc:
        fail(str(exc), code=1)
    record = {
        "run_id": report.run_id,
        "file": report.file,
        "events": report.events,
        "steps": report.steps,
        "failures": report.failures,
        "audit_entries_checked": report.audit_entries_checked,
    }
    _summary(record, output)
