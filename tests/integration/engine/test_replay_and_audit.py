"""Replay with control (maker-checker) and the tamper-evident audit log, through the CLI too."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.replay import (
    ReplayError,
    Selector,
    approve_replay,
    get_request,
    reject_replay,
    request_replay,
)
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.identity import NotAllowed, Operator
from quote2cash.store.schema import audit_log
from support.forger import forging
from support.identity import first_admin, new_operator, token_of, via_token

runner = CliRunner()


def failing_registry(broken: set[str]) -> Registry:
    registry = Registry()

    @registry.on("*")
    async def handle(ctx: HandlerContext, event: Event) -> None:
        if event.subject in broken:
            raise DataError(f"{event.subject}: field 'tax_id' missing; expected a VAT number")

    return registry


async def fail_one(runtime: Runtime, type_: str) -> str:
    runtime.log.append(new_event(type_, "acct-1", correlation_id="corr-1"))
    await Worker(runtime, failing_registry({"acct-1"})).drain()
    [row] = failed_events(runtime)
    return row.id


@pytest.fixture
def people(runtime: Runtime) -> dict[str, Operator]:
    """Each acts through a token of their own, as the CLI and the API authenticate them."""
    admin = first_admin(runtime)
    return {
        name: via_token(runtime, new_operator(runtime, admin, name, role))
        for name, role in [
            ("maria", "operator"),
            ("omar", "operator"),
            ("fiona", "finance_approver"),
        ]
    }


async def test_requester_cannot_approve_own_replay(
    runtime: Runtime, people: dict[str, Operator]
) -> None:
    event_id = await fail_one(runtime, "crm.account.updated")
    req = request_replay(
        runtime, Selector(event_ids=(event_id,)), by=people["maria"], reason="fixed"
    )
    with pytest.raises(NotAllowed, match="cannot also decide"):
        approve_replay(runtime, req.id, by=people["maria"])
    viewer = Operator("vic", frozenset({"viewer"}), via="token")
    with pytest.raises(NotAllowed, match="needs the operator or finance_approver role"):
        approve_replay(runtime, req.id, by=viewer)
    with pytest.raises(NotAllowed, match="needs the role 'operator'"):
        request_replay(runtime, Selector(event_ids=(event_id,)), by=viewer, reason="x")
    assert get_request(runtime, req.id).status == "pending"
    approve_replay(runtime, req.id, by=people["omar"])
    assert get_request(runtime, req.id).status == "executed"
    with runtime.engine.connect() as conn:
        decided = conn.execute(
            select(audit_log.c.actor, audit_log.c.details).where(
                audit_log.c.action == "replay.approved"
            )
        ).one()
    assert decided.actor == "omar"
    assert json.loads(decided.details)["credential"] == "token omar-token"
    with pytest.raises(ReplayError, match="not pending"):
        approve_replay(runtime, req.id, by=people["fiona"])


async def test_finance_sensitive_replay_needs_finance_approver(
    runtime: Runtime, people: dict[str, Operator]
) -> None:
    event_id = await fail_one(runtime, "billing.invoice.finalized")
    req = request_replay(
        runtime, Selector(correlation_id="corr-1"), by=people["maria"], reason="retry"
    )
    assert req.finance_sensitive and req.event_count == 1
    with pytest.raises(NotAllowed, match="lacks the finance_approver role"):
        approve_replay(runtime, req.id, by=people["omar"])
    approve_replay(runtime, req.id, by=people["fiona"], note="amounts checked")
    [row] = list_events(runtime)
    assert row.id == event_id and row.status == "pending"


async def test_rejected_replay_changes_nothing(
    runtime: Runtime, people: dict[str, Operator]
) -> None:
    await fail_one(runtime, "crm.account.updated")
    req = request_replay(
        runtime, Selector(correlation_id="corr-1"), by=people["maria"], reason="try"
    )
    reject_replay(runtime, req.id, by=people["omar"], note="not fixed yet")
    assert get_request(runtime, req.id).status == "rejected"
    assert len(failed_events(runtime)) == 1


async def test_processed_event_replays_as_a_new_event_after_current_ones(
    runtime: Runtime, people: dict[str, Operator]
) -> None:
    runtime.log.append(new_event("crm.account.updated", "acct-9", correlation_id="c9", id="e1"))
    await Worker(runtime, failing_registry(set())).drain()
    with pytest.raises(ReplayError, match="include-processed"):
        request_replay(runtime, Selector(event_ids=("e1",)), by=people["maria"], reason="resync")
    req = request_replay(
        runtime,
        Selector(event_ids=("e1",), include_processed=True),
        by=people["maria"],
        reason="resync",
    )
    approve_replay(runtime, req.id, by=people["omar"])
    rows = list_events(runtime, subject="acct-9")
    assert [(r.sequence, r.source, r.status) for r in rows] == [
        (2, "q2c.replay", "pending"),
        (1, "q2c", "done"),
    ]
    assert rows[0].correlation_id == "c9"


async def test_edited_audit_row_is_caught_by_cli_verify(
    runtime: Runtime, people: dict[str, Operator], db_url: str
) -> None:
    await fail_one(runtime, "crm.account.updated")
    req = request_replay(runtime, Selector(correlation_id="corr-1"), by=people["maria"], reason="x")
    approve_replay(runtime, req.id, by=people["omar"])
    ok = runner.invoke(app, ["audit", "verify", "--db", db_url])
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output
    total = verify_audit(runtime.engine).checked
    assert total >= 6
    with forging(runtime.engine) as conn:  # someone edits who approved, by hand
        conn.execute(
            update(audit_log).where(audit_log.c.action == "replay.approved").values(actor="maria")
        )
        edited = conn.execute(
            text("SELECT seq FROM audit_log WHERE action = 'replay.approved'")
        ).scalar_one()
    bad = runner.invoke(app, ["audit", "verify", "--db", db_url])
    assert bad.exit_code == 1
    assert f"broken at entry {edited}" in bad.output


async def test_truncated_audit_log_is_caught(runtime: Runtime) -> None:
    admin = first_admin(runtime)
    new_operator(runtime, admin, "a", "operator")
    with forging(runtime.engine) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    result = verify_audit(runtime.engine)
    assert not result.ok and result.checked == 1
    assert "truncated" in (result.reason or "")


def test_cli_bad_input_is_a_clear_error(db_url: str, runtime: Runtime) -> None:
    r = runner.invoke(
        app,
        [
            "replay",
            "request",
            "--db",
            db_url,
            "--reason",
            "x",
            "--since",
            "yesterday",
        ],
    )
    assert r.exit_code == 2 and "--since" in r.output and "ISO 8601" in r.output
    now = Runtime.open(db_url)  # the CLI's clock is the real one: tokens issued now are valid
    admin = first_admin(now)
    omar = new_operator(now, admin, "omar", "operator")
    token = ["--token", token_of(now, omar)]
    r = runner.invoke(app, ["replay", "approve", "42", "--db", db_url, *token])
    assert r.exit_code == 2 and "replay request 42 does not exist" in r.output
    r = runner.invoke(app, ["replay", "approve", "42", "--db", db_url])
    assert r.exit_code == 2 and "needs your API token" in r.output
    r = runner.invoke(app, ["replay", "approve", "42", "--db", db_url, "--token", "q2c_forged"])
    assert r.exit_code == 2 and "unknown, revoked or expired" in r.output
    admin_token = ["--token", token_of(now, admin)]
    r = runner.invoke(
        app, ["operators", "add", "zed", "--role", "king", "--db", db_url, *admin_token]
    )
    assert r.exit_code == 2 and "unknown role" in r.output and "king" in r.output
    now.close()
    r = runner.invoke(app, ["events", "show", "nope", "--db", db_url])
    assert r.exit_code == 2 and "no event" in r.output
