"""``q2c dlq retry|correct|resolve``, ``q2c replay request --dry-run`` and ``q2c quarantine``:
decisions taken as the owner of ``--token``/``$Q2C_TOKEN``, one-line errors, JSON output, and
an id such as ``[/bold]`` printed verbatim (it crashed ``q2c events list``)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.quarantine import quarantine_delivery
from quote2cash.engine.queries import list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import audit_log, replay_requests
from support.identity import first_admin, new_operator, token_of

runner = CliRunner()
WIDE = {"COLUMNS": "300"}


async def prepared(tmp_path: Path) -> tuple[str, str, dict[str, int], int]:
    """A store with three failed events and a quarantined delivery; (db, maria's token,
    type -> position, delivery id)."""
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    runtime = Runtime.open(db, sqlite_synchronous="NORMAL")
    maria = new_operator(runtime, first_admin(runtime), "maria", "operator")
    token = token_of(runtime, maria)
    registry = Registry()

    @registry.on("*")
    async def refuse(ctx: HandlerContext, event: Event) -> None:
        if not event.data.get("valid"):
            raise DataError("field 'tax_id' missing")

    for type_, subject, ident in (
        ("crm.account.updated", "acct-1", "evt[/bold]"),
        ("erp.customer.updated", "acct-2", "evt-2"),
        ("billing.invoice.finalized", "contract:CN-1", "evt-3"),
    ):
        runtime.log.append(new_event(type_, subject, {"n": 1}, id=ident, correlation_id="c-1"))
    await Worker(runtime, registry).drain()
    positions = {r.type: r.pos for r in list_events(runtime)}
    delivery, _ = quarantine_delivery(runtime, "crm", b"[1]", {}, "the body is an array")
    runtime.close()
    return db, token, positions, delivery


def q2c(*args: str, token: str | None = None) -> tuple[int, str]:
    env = dict(WIDE, Q2C_TOKEN=token) if token else WIDE
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def audit_actions(db: str) -> list[str]:
    runtime = Runtime.open(db)
    try:
        with runtime.engine.connect() as conn:
            return [r.action for r in conn.execute(select(audit_log).order_by(audit_log.c.seq))]
    finally:
        runtime.close()


async def test_dlq_actions_need_a_token_and_are_audited(tmp_path: Path) -> None:
    db, token, pos, _ = await prepared(tmp_path)
    code, out = q2c("events", "list", "--db", db)
    assert code == 0 and "evt[/bold]" in out

    crm, erp, invoice = (
        pos["crm.account.updated"],
        pos["erp.customer.updated"],
        pos["billing.invoice.finalized"],
    )
    code, out = q2c("dlq", "retry", str(crm), "--db", db)
    assert code == 2 and "needs your API token" in out
    code, out = q2c("dlq", "retry", str(invoice), "--db", db, token=token)
    assert code == 2 and "finance-sensitive" in out and "Traceback" not in out
    code, out = q2c("dlq", "retry", str(crm), "--db", db, token=token)
    assert code == 0, out

    data_file = tmp_path / "fixed.json"
    data_file.write_text("[1]", encoding="utf-8")
    code, out = q2c("dlq", "correct", str(erp), "--data-file", str(data_file), "--db", db,
                    token=token)  # fmt: skip
    assert code == 2 and "expected a JSON object" in out
    data_file.write_text(json.dumps({"n": 1, "valid": True}), encoding="utf-8")
    code, out = q2c("dlq", "correct", str(erp), "--data-file", str(data_file), "--db", db,
                    token=token)  # fmt: skip
    assert code == 0 and "corrected" in out
    code, out = q2c("dlq", "correct", str(invoice), "--data-file", str(data_file), "--db", db,
                    token=token)  # fmt: skip
    said = " ".join(out.split())  # rich wraps at the terminal's width
    assert code == 0 and "replay request" in said and "finance approver" in said

    code, out = q2c("dlq", "resolve", "999", "--reason", "gone", "--db", db, token=token)
    assert code == 2 and "no event at position 999" in out
    assert audit_actions(db)[-3:] == [
        "exception.retried",
        "exception.corrected",
        "replay.requested",
    ]


async def test_replay_dry_run_lists_exactly_and_files_nothing(tmp_path: Path) -> None:
    db, *_ = await prepared(tmp_path)
    code, out = q2c("replay", "request", "--correlation-id", "c-1", "--reason", "check",
                    "--dry-run", "--db", db)  # fmt: skip
    assert code == 0, out
    assert "a request would take these 3 event(s)" in out and "evt[/bold]" in out
    runtime = Runtime.open(db)
    with runtime.engine.connect() as conn:
        assert conn.execute(select(replay_requests)).all() == []
    runtime.close()


async def test_quarantine_commands(tmp_path: Path) -> None:
    db, token, _, delivery = await prepared(tmp_path)
    code, out = q2c("quarantine", "list", "--db", db, "--format", "json")
    assert code == 0
    [listed] = json.loads(out)
    assert listed["id"] == delivery and listed["reason"] == "the body is an array"
    code, out = q2c("quarantine", "show", str(delivery), "--db", db)
    assert code == 0 and json.loads(out)["body"] == "[1]"
    code, out = q2c("quarantine", "release", str(delivery), "--db", db, token=token)
    assert code == 2 and "still cannot understand" in out
    code, out = q2c("quarantine", "discard", str(delivery), "--reason", "test", "--db", db,
                    token=token)  # fmt: skip
    assert code == 0
    code, out = q2c("quarantine", "list", "--db", db)
    assert code == 0 and "0 deliveries" in out
    code, out = q2c("quarantine", "list", "--status", "odd", "--db", db)
    assert code == 2 and "expected one of" in out
    assert audit_actions(db)[-1] == "quarantine.discarded"
