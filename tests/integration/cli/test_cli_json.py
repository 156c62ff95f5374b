"""Every ``q2c`` command that prints a table also prints JSON (``--format json``) with a fixed
shape; tables carry hostile text verbatim and are not cut at 80 columns in a pipe."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import maintenance_windows, replay_requests, systems

HOSTILE = "[/bold] [red]x[/red] [link=http://evil]y[/link] [/]"
LONG_SUBJECT = "contract:" + "C" * 150 + "-end"
runner = CliRunner()


@pytest.fixture
async def store(tmp_path: Path) -> str:
    """A store with a done event, an exception and a replay request, a pause and a window."""
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    runtime = Runtime.open(db, initialise=True, sqlite_synchronous="NORMAL")
    registry = Registry()

    @registry.on("billing.invoice.finalized")
    async def refuse(ctx: HandlerContext, event: Event) -> None:
        raise DataError(f"bad invoice {HOSTILE}", system="billing")

    @registry.on("crm.opportunity.closed_won")
    async def accept(ctx: HandlerContext, event: Event) -> None:
        return None

    runtime.log.append(new_event("billing.invoice.finalized", "contract:C-9", {}, id=HOSTILE))
    runtime.log.append(new_event("crm.opportunity.closed_won", LONG_SUBJECT, {}))
    await Worker(runtime, registry).drain()
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        conn.execute(
            replay_requests.insert().values(
                selector=json.dumps({"positions": [1]}),
                reason=HOSTILE,
                requested_by="ops-a",
                requested_at=now,
                status="pending",
                finance_sensitive=True,
                event_count=1,
            )
        )
        conn.execute(
            systems.insert().values(
                name="erp", paused=True, reason=HOSTILE, changed_by="ops-a", changed_at=now
            )
        )
        conn.execute(
            maintenance_windows.insert().values(
                system="billing",
                starts_at=now + timedelta(hours=1),
                ends_at=now + timedelta(hours=2),
                reason="upgrade",
                created_by="ops-a",
            )
        )
    runtime.close()
    return db


def as_json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_events_list_json(store: str) -> None:
    rows = as_json("events", "list", "--db", store)
    assert HOSTILE in [r["id"] for r in rows]
    assert set(rows[0]) == {
        "pos", "id", "type", "subject", "sequence", "status", "attempts", "correlation_id",
        "parked_on", "park_reason", "park_deadline",
    }  # fmt: skip
    assert {r["status"] for r in rows} == {"exception", "done"}
    assert all(isinstance(r["pos"], int) and isinstance(r["attempts"], int) for r in rows)


def test_dlq_list_json(store: str) -> None:
    rows = as_json("dlq", "list", "--db", store)
    assert len(rows) == 1
    (row,) = rows
    assert set(row) == {
        "id", "type", "subject", "queue", "category", "attempts", "reason", "correlation_id",
    }  # fmt: skip
    assert row["id"] == HOSTILE and row["queue"] == "exception" and row["category"] == "data"
    assert HOSTILE in row["reason"]


def test_replay_list_json(store: str) -> None:
    (row,) = as_json("replay", "list", "--db", store)
    assert row == {
        "id": 1,
        "status": "pending",
        "events": 1,
        "finance_sensitive": True,
        "requested_by": "ops-a",
        "decided_by": None,
        "reason": HOSTILE,
        "decision_note": None,
    }


def test_systems_status_json(store: str) -> None:
    rows = {r["system"]: r for r in as_json("systems", "status", "--db", store)}
    assert rows["erp"]["paused"] is True and rows["erp"]["reason"] == HOSTILE
    (window,) = rows["billing"]["windows"]
    assert window["in_force"] is False
    assert datetime.fromisoformat(window["starts_at"]).tzinfo is not None
    assert set(rows["erp"]) >= {"system", "paused", "reason", "changed_by", "windows"}
    assert "held_subjects" in rows["erp"]


def test_systems_check_json_for_an_unreachable_system(tmp_path: Path) -> None:
    config = tmp_path / "systems.yaml"
    config.write_text(
        "billing:\n  kind: stripe\n"
        "  settings: {api_key: sk_test_json123456, base_url: 'http://127.0.0.1:1'}\n"
    )
    result = runner.invoke(app, ["systems", "check", "--config", str(config), "--format", "json"])
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert set(row) == {"role", "reachable", "authenticated", "latency_ms", "detail"}
    assert row["role"] == "billing" and row["reachable"] is False


def sandbox_state(workdir: Path) -> None:
    """A sandbox state file as ``q2c sandbox up`` writes it, its processes gone."""
    workdir.mkdir(parents=True)
    dead = 2**22 + 12345
    state = {
        "stripe": {"pid": dead, "base_url": "http://127.0.0.1:1", "api_key": "sk_test_state1"},
        "oidc": {"pid": dead, "issuer": "http://127.0.0.1:2", "client_secret": "oidc-secret"},
    }
    fd = os.open(workdir / "state.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle)


def test_sandbox_status_json_and_credentials(tmp_path: Path) -> None:
    workdir = tmp_path / "sandbox"
    sandbox_state(workdir)
    status = runner.invoke(
        app, ["sandbox", "status", "--workdir", str(workdir), "--format", "json"]
    )
    assert status.exit_code == 1, "a system that does not run fails the status"
    assert json.loads(status.stdout) == [
        {"system": "billing (Stripe emulator)", "url": "http://127.0.0.1:1", "running": False},
        {
            "system": "identity (OpenID Connect provider)",
            "url": "http://127.0.0.1:2",
            "running": False,
        },
    ]
    assert "sk_test_state1" not in status.stdout
    creds = runner.invoke(
        app, ["sandbox", "status", "--credentials", "--workdir", str(workdir), "--format", "json"]
    )
    rows = json.loads(creds.stdout)
    assert all(set(r) == {"system", "field", "value"} for r in rows)
    found = {(r["system"], r["field"]): r["value"] for r in rows}
    assert found[("billing (Stripe emulator)", "api_key")] == "sk_test_state1"
    assert found[("billing (Stripe emulator)", "url")] == "http://127.0.0.1:1"
    assert found[("oidc", "client_secret")] == "oidc-secret"
    assert ("oidc", "pid") not in found
    table = runner.invoke(app, ["sandbox", "status", "--credentials", "--workdir", str(workdir)])
    assert "sk_test_state1" in table.stdout


def test_tables_show_hostile_text_verbatim_and_are_not_cut_at_80_columns(store: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    for command in (["events", "list"], ["dlq", "list"], ["replay", "list"], ["systems", "status"]):
        result = runner.invoke(app, [*command, "--db", store], env=env)
        assert result.exit_code == 0, result.output
        assert HOSTILE in result.stdout, (command, result.stdout)
    events = runner.invoke(app, ["events", "list", "--db", store], env=env)
    assert LONG_SUBJECT in events.stdout, "the subject is on one line, whole"
    assert max(len(line) for line in events.stdout.splitlines()) > 160
