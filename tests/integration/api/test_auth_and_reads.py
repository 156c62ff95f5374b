"""Bearer tokens: every /v1 route refuses a missing, unknown or revoked token and answers a
valid one; /health is open; tokens are shown once and stored only as hashes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import aiohttp
import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from quote2cash.api.app import build_app
from quote2cash.api.cli import tokens_app
from quote2cash.api.tokens import TokenError, create_token, revoke_token
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.control import pause_system
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import api_tokens, audit_log

from .conftest import served

V1 = ["/v1/events", "/v1/events/evt_1", "/v1/exceptions", "/v1/systems"]


def seed(runtime: Runtime) -> None:
    runtime.log.append_many(
        [
            new_event(
                "billing.invoice.finalized",
                "contract:CN-R-1",
                {"amount": "12.30"},
                source="billing",
                id="evt_1",
                correlation_id="deal-1",
                time=datetime(2026, 11, 1, tzinfo=UTC),
            ),
            new_event(
                "crm.opportunity.closed_won",
                "contract:CN-R-2",
                source="crm",
                id="closed_won:006X",
                correlation_id="deal-2",
            ),
        ]
    )
    pause_system(runtime, "erp", actor="ops", reason="month-end close")


async def test_every_v1_route_needs_a_valid_token(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    seed(runtime)
    reader = create_token(runtime, "dashboard", "reader", actor="ops")
    operator = create_token(runtime, "runbook", "operator", actor="ops")
    gone = create_token(runtime, "old-laptop", "reader", actor="ops")
    revoke_token(runtime, "old-laptop", actor="ops")
    refused = {
        "none": {},
        "not bearer": {"Authorization": f"Basic {reader}"},
        "empty": {"Authorization": "Bearer "},
        "unknown": {"Authorization": "Bearer q2c_" + "x" * 43},
        "tampered": {"Authorization": f"Bearer {reader[:-1]}{'A' if reader[-1] != 'A' else 'B'}"},
        "revoked": {"Authorization": f"Bearer {gone}"},
    }
    async with served(build_app(runtime)) as base:
        for path in V1:
            for name, headers in refused.items():
                async with http.get(base + path, headers=headers) as r:
                    body = await r.json()
                    assert r.status == 401, (path, name)
                    assert body["error"]["code"] == "unauthenticated", (path, name)
                    assert gone not in json.dumps(body) and reader not in json.dumps(body)
            for token in (reader, operator):
                async with http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200, (path, await r.text())
        async with http.get(f"{base}/health") as r:
            assert r.status == 200
            assert await r.json() == {
                "status": "ok",
                "store": {"reachable": True},
                "worker": {"enabled": False, "running": False},
            }


async def test_reads_answer_from_the_log(runtime: Runtime, http: aiohttp.ClientSession) -> None:
    seed(runtime)
    auth = {"Authorization": f"Bearer {create_token(runtime, 'ui', 'reader', actor='ops')}"}
    async with served(build_app(runtime)) as base:

        async def get(path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
            async with http.get(base + path, headers=auth) as r:
                return r.status, await r.json()

        status, body = await get("/v1/events")
        assert status == 200 and [e["id"] for e in body["data"]] == ["closed_won:006X", "evt_1"]
        status, body = await get("/v1/events?subject=contract:CN-R-1")
        assert [e["id"] for e in body["data"]] == ["evt_1"]
        assert body["data"][0]["time"] == "2026-11-01T00:00:00+00:00"
        status, body = await get("/v1/events?correlation_id=deal-2&status=pending&limit=1")
        assert [e["id"] for e in body["data"]] == ["closed_won:006X"]
        status, body = await get("/v1/events?status=done")
        assert body == {"data": [], "count": 0}

        status, body = await get("/v1/events/evt_1")
        assert status == 200
        assert body["event"]["id"] == "evt_1" and body["event"]["data"] == {"amount": "12.30"}
        assert body["steps"] == [] and body["failures"] == []
        status, body = await get("/v1/events/evt_missing")
        assert status == 404 and body["error"]["code"] == "not_found"

        status, body = await get("/v1/exceptions")
        assert status == 200 and body["data"] == []
        status, body = await get("/v1/systems")
        assert [(s["system"], s["paused"], s["reason"]) for s in body["data"]] == [
            ("erp", True, "month-end close")
        ]

        for bad in (
            "/v1/events?limit=0",
            "/v1/events?limit=x",
            "/v1/events?status=weird",
            "/v1/exceptions?kind=other",
        ):
            status, body = await get(bad)
            assert status == 400 and body["error"]["code"] == "invalid_parameter", bad
        status, body = await get("/v1/nothing-here")
        assert status == 404 and body["error"]["code"] == "not_found"


def test_tokens_cli_shows_a_token_once_and_keeps_only_its_hash(db_url: str) -> None:
    app = typer.Typer()
    app.add_typer(tokens_app, name="tokens")
    app.command("noop")(lambda: None)
    cli = CliRunner()
    runtime = Runtime.open(db_url)
    try:
        created = cli.invoke(
            app,
            [
                "tokens",
                "create",
                "ci-bot",
                "--role",
                "operator",
                "--db",
                db_url,
                "--actor",
                "alice",
            ],
        )
        assert created.exit_code == 0, created.output
        token = created.output.strip().splitlines()[-1]
        assert token.startswith("q2c_") and len(token) > 40

        listed = cli.invoke(app, ["tokens", "list", "--db", db_url])
        assert listed.exit_code == 0 and "ci-bot" in listed.output and "operator" in listed.output
        assert token not in listed.output and token[4:12] not in listed.output

        with runtime.engine.connect() as conn:
            row = conn.execute(select(api_tokens)).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in " ".join(str(v) for v in row)

        again = cli.invoke(app, ["tokens", "create", "ci-bot", "--db", db_url])
        assert again.exit_code != 0 and "already exists" in again.output
        bad_role = cli.invoke(app, ["tokens", "create", "x", "--role", "admin", "--db", db_url])
        assert bad_role.exit_code != 0 and "admin" in bad_role.output

        revoked = cli.invoke(app, ["tokens", "revoke", "ci-bot", "--db", db_url, "--actor", "bob"])
        assert revoked.exit_code == 0, revoked.output
        assert "ci-bot" not in cli.invoke(app, ["tokens", "list", "--db", db_url]).output
        assert "ci-bot" in cli.invoke(app, ["tokens", "list", "--all", "--db", db_url]).output
        assert cli.invoke(app, ["tokens", "revoke", "ci-bot", "--db", db_url]).exit_code != 0

        with runtime.engine.connect() as conn:
            actions = [
                (a.actor, a.action, a.entity)
                for a in conn.execute(
                    select(audit_log)
                    .where(audit_log.c.action.like("api_token.%"))
                    .order_by(audit_log.c.seq)
                )
            ]
        assert actions == [
            ("alice", "api_token.created", "ci-bot"),
            ("bob", "api_token.revoked", "ci-bot"),
        ]
        assert verify_audit(runtime.engine).ok
        # A name is free again once its token is revoked.
        create_token(runtime, "ci-bot", "reader", actor="alice")
        with pytest.raises(TokenError, match="role 'root' is unknown"):
            create_token(runtime, "y", "root", actor="alice")
    finally:
        runtime.close()
