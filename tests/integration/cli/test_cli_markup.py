"""``q2c`` tables show text from data verbatim: ``[billing]``, ``[price]`` or ``[bold]`` in a
reason, subject or id is neither styled nor eaten as rich markup."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker

REASON = "price [price_1Abc] is not in [bold]the catalog[/bold]"
SUBJECT = "contract:[red]C-1[/red]"


async def test_dlq_and_events_tables_show_markup_like_text_verbatim(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    runtime = Runtime.open(db, sqlite_synchronous="NORMAL")
    registry = Registry()

    @registry.on("billing.invoice.finalized")
    async def refuse(ctx: HandlerContext, event: Event) -> None:
        raise DataError(REASON, system="billing")

    runtime.log.append(new_event("billing.invoice.finalized", SUBJECT, {"id": "in_1"}))
    await Worker(runtime, registry).drain()
    runtime.close()

    runner = CliRunner()
    wide = {"COLUMNS": "400"}
    listed = runner.invoke(app, ["dlq", "list", "--db", db], env=wide)
    assert listed.exit_code == 0, listed.output
    assert f"[billing] {REASON}" in listed.output
    assert SUBJECT in listed.output

    events = runner.invoke(app, ["events", "list", "--db", db], env=wide)
    assert events.exit_code == 0, events.output
    assert SUBJECT in events.output

    missing = runner.invoke(app, ["events", "show", "[bold]nope[/bold]", "--db", db], env=wide)
    assert missing.exit_code == 2
    assert "[bold]nope[/bold]" in missing.output
