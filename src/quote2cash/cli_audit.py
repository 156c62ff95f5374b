"""``q2c audit verify`` and ``q2c audit checkpoint``: the keyed chain and its signed checkpoints."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from quote2cash.cli_text import FormatOption, OutputFormat, escape, show_records

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]


def register(audit_app: typer.Typer) -> None:
    audit_app.command("verify")(audit_verify)
    audit_app.command("checkpoint")(audit_checkpoint)


def audit_verify(db: DbOption = None, output: FormatOption = OutputFormat.table) -> None:
    """Check the signed chain, its head and the last checkpoint; exit 1 naming the first break."""
    from quote2cash.cli import console, fail, open_runtime
    from quote2cash.engine.checkpoints import verify_store

    runtime = open_runtime(db)
    result = verify_store(runtime)
    if output is OutputFormat.json:
        report = {
            "ok": result.ok,
            "entries_verified": result.checked,
            "first_broken_entry": result.first_broken_seq,
            "broken_chain": result.chain,
            "reason": result.reason,
            "chains": result.chains,
            "key_id": result.key_id,
            "store_id": result.store_id,
            "checkpoints": runtime.checkpoints.where,
            "last_checkpoint_entry": result.checkpoint_seq,
            "last_checkpoint_at": result.checkpoint_at,
        }
        typer.echo(json.dumps(report, indent=2))
    elif result.ok:
        console.print(
            f"[green]audit log intact[/]: {result.checked} entries verified "
            f"in {_chains(result.chains)} "
            f"(key {result.key_id}; last checkpoint at entry {result.checkpoint_seq}, "
            f"{escape(str(result.checkpoint_at))}, in {escape(runtime.checkpoints.where)})",
            highlight=False,
        )
    if not result.ok:
        at = f" at entry {result.first_broken_seq}" if result.first_broken_seq else ""
        of = f" of chain {result.chain}" if result.chain else ""
        fail(
            f"audit log broken{at}{of}: {result.reason} ({result.checked} entries verified)",
            code=1,
        )


def _chains(counts: dict[str, int]) -> str:
    """``1 chain`` or ``3 chains (main 8, worker:a 2, worker:b 2)``, names escaped for rich."""
    if len(counts) <= 1:
        return "1 chain"
    listed = ", ".join(f"{escape(name)} {count}" for name, count in counts.items())
    return f"{len(counts)} chains ({listed})"


def audit_checkpoint(db: DbOption = None, output: FormatOption = OutputFormat.table) -> None:
    """Anchor the moved partition chains, sign the audit head and append it outside the store."""
    from quote2cash.cli import console, fail, open_runtime
    from quote2cash.engine.checkpoints import CheckpointError, checkpoint_now

    runtime = open_runtime(db)
    try:
        checkpoint = checkpoint_now(runtime)
    except CheckpointError as exc:
        fail(str(exc), code=1)
    record = {
        "store_id": checkpoint.store_id,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "at": checkpoint.at,
        "key_id": checkpoint.key_id,
        "written_to": runtime.checkpoints.where,
    }
    show_records(console, [record], tuple(record), output)
