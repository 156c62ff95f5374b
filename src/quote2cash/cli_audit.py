"""``q2c audit verify`` and ``q2c audit checkpoint``: the keyed chain and its signed checkpoints."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from quote2cash.cli_text import DataTable, escape

FORMATS = ("table", "json")
FormatOption = Annotated[str, typer.Option("--format", help="table or json")]
DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
console = Console()


def _check_format(fmt: str) -> None:
    from quote2cash.cli import fail

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def _print(fmt: str, fields: dict[str, Any]) -> None:
    if fmt == "json":
        console.print_json(json.dumps(fields))
        return
    table = DataTable("field", "value")
    for name, value in fields.items():
        shown = value if isinstance(value, Text) else ("-" if value is None else str(value))
        table.add_row(name, shown)
    console.print(table)


def register(audit_app: typer.Typer) -> None:
    audit_app.command("verify")(audit_verify)
    audit_app.command("checkpoint")(audit_checkpoint)


def audit_verify(db: DbOption = None, format: FormatOption = "table") -> None:
    """Check the signed chain, its head and the last checkpoint; exit 1 naming the first break."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.engine.checkpoints import verify_store

    _check_format(format)
    runtime = open_runtime(db)
    result = verify_store(runtime)
    fields = {
        "ok": result.ok,
        "entries_verified": result.checked,
        "first_broken_entry": result.first_broken_seq,
        "reason": result.reason,
        "key_id": result.key_id,
        "store_id": result.store_id,
        "checkpoints": runtime.checkpoints.where,
        "last_checkpoint_entry": result.checkpoint_seq,
        "last_checkpoint_at": result.checkpoint_at,
    }
    if format == "json":
        _print(format, fields)
    elif result.ok:
        console.print(
            f"[green]audit log intact[/]: {result.checked} entries verified "
            f"(key {result.key_id}; last checkpoint at entry {result.checkpoint_seq}, "
            f"{escape(str(result.checkpoint_at))}, in {escape(runtime.checkpoints.where)})"
        )
    if not result.ok:
        at = f" at entry {result.first_broken_seq}" if result.first_broken_seq else ""
        fail(f"audit log broken{at}: {result.reason} ({result.checked} entries verified)", code=1)


def audit_checkpoint(db: DbOption = None, format: FormatOption = "table") -> None:
    """Sign the audit head now and append it outside the store."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.engine.checkpoints import CheckpointError, checkpoint_now

    _check_format(format)
    runtime = open_runtime(db)
    try:
        checkpoint = checkpoint_now(runtime)
    except CheckpointError as exc:
        fail(str(exc), code=1)
    _print(
        format,
        {
            "store_id": checkpoint.store_id,
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "at": checkpoint.at,
            "key_id": checkpoint.key_id,
            "written_to": runtime.checkpoints.where,
        },
    )
