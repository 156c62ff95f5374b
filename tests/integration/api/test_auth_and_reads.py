"""Bearer tokens: every /v1 route refuses a missing, unknown, revoked or expired token and one
whose owner is disabled, and answers a valid one; /health is open; tokens are shown once and
stored only as hashes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from quote2cash.api.app import build_app
from quote2cash.api.cli import tokens_app
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.control import pause_system
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator, throttle
from quote2cash.identity.accounts import add_operator, disable_operator, set_password
from quote2cash.identity.tokens import TokenError, issue_token, revoke_token
from quote2cash.store.schema import api_tokens, audit_log
from support.identity import first_admin, new_operator, token_of

from .conftest import served

V1 = ["/v1/events", "/v1/events/evt_1", "/v1/exceptions", "/v1/systems"]
OPS = Operator("ops", frozenset({"operator"}), via="token")


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
    pause_system(runtime, "erp", by=OPS, reason="month-end close")


async def test_every_v1_route_needs_a_valid_token(
    runtime: Runtime, clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    seed(runtime)
    admin = first_admin(runtime)
    viewer = new_operator(runtime, admin, "dana", "viewer")
    runner = new_operator(runtime, admin, "rui", "operator")
    leaver = new_operator(runtime, admin, "lea", "operator")
    reader = token_of(runtime, viewer, "dashboard")
    operator = token_of(runtime, runner, "runbook")
    gone = token_of(runtime, viewer, "old-laptop")
    revoke_token(runtime, "old-laptop", by=viewer)
    short = token_of(runtime, runner, "short-lived", ttl=timedelta(minutes=5))
    of_leaver = token_of(runtime, leaver, "leaver")
    disable_operator(runtime, "lea", by=admin)
    clock.advance(301)
    refused = {
        "none": {},
        "not bearer": {"Authorization": f"Basic {reader}"},
        "empty": {"Authorization": "Bearer "},
        "unknown": {"Authorization": "Bearer q2c_" + "x" * 43},
        "tampered": {"Authorization": f"Bearer {reader[:-1]}{'A' if reader[-1] != 'A' else 'B'}"},
        "revoked": {"Authorization": f"Bearer {gone}"},
        "expired": {"Authorization": f"Bearer {short}"},
        "owner disabled": {"Authorization": f"Bearer {of_leaver}"},
    }
    async with served(build_app(runtime)) as base:
        for path in V1:
            for name, headers in refused.items():
                throttle.clear(runtime, throttle.token_client_key("127.0.0.1"))
                async with http.get(base + path, headers=headers) as r:
                    body = await r.json()
                    assert r.status == 401, (path, name)
                    assert body["error"]["code"] == "unauthenticated", (path, name)
                    assert gone not in json.dumps(body) and reader not in json.dumps(body)
            throttle.clear(runtime, throttle.token_client_key("127.0.0.1"))
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


async def test_a_client_guessing_tokens_is_locked_out_for_a_growing_time(
    runtime: Runtime, clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    viewer = new_operator(runtime, first_admin(runtime), "dana", "viewer")
    valid = {"Authorization": f"Bearer {token_of(runtime, viewer)}"}
    async with served(build_app(runtime)) as base:

        async def guess(times: int) -> None:
            for n in range(times):
                headers = {"Authorization": f"Bearer q2c_guess{n}"}
                async with http.get(f"{base}/v1/events", headers=headers) as r:
                    assert r.status == 401

        async def status_of_valid() -> tuple[int, str]:
            async with http.get(f"{base}/v1/events", headers=valid) as r:
                return r.status, (await r.text())

        await guess(4)
        assert (await status_of_valid())[0] == 200
        await guess(1)
        status, text = await status_of_valid()
        assert status == 401 and "too many failed attempts" in text
        clock.advance(5 * 60 + 1)
        assert (await status_of_valid())[0] == 200
        await guess(5)
        clock.advance(5 * 60 + 1)  # the second lockout lasts twice as long
        assert (await status_of_valid())[0] == 401
        clock.advance(5 * 60)
        assert (await status_of_valid())[0] == 200


async def test_reads_answer_from_the_log(runtime: Runtime, http: aiohttp.ClientSession) -> None:
    seed(runtime)
    viewer = new_operator(runtime, first_admin(runtime), "ui", "viewer")
    auth = {"Authorization": f"Bearer {token_of(runtime, viewer)}"}
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
        admin = first_admin(runtime)
        one_time = add_operator(runtime, "alice", ["operator"], by=admin)
        alice = Operator("alice", frozenset({"operator"}), via="password")
        set_password(runtime, "alice", one_time, "alice's long password", client="test")
        created = cli.invoke(
            app,
            [
                "tokens",
                "create",
                "ci-bot",
                "--role",
                "operator",
                "--ttl",
                "7d",
                "--operator",
                "alice",
                "--password-stdin",
                "--db",
                db_url,
            ],
            input="alice's long password\n",
        )
        assert created.exit_code == 0, created.output
        token = created.output.strip().splitlines()[-1]
        assert token.startswith("q2c_") and len(token) > 40

        listed = cli.invoke(app, ["tokens", "list", "--db", db_url])
        assert listed.exit_code == 0 and "ci-bot" in listed.output and "operator" in listed.output
        assert token not in listed.output and token[4:12] not in listed.output
        as_json = json.loads(
            cli.invoke(app, ["tokens", "list", "--db", db_url, "--format", "json"]).output
        )
        [entry] = as_json
        assert entry["owner"] == "alice" and entry["roles"] == ["operator"]
        assert token not in json.dumps(as_json)

        with runtime.engine.connect() as conn:
            row = conn.execute(select(api_tokens)).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in " ".join(str(v) for v in row)
        assert row.expires_at - row.created_at == timedelta(days=7)

        as_alice = ["--token", token, "--db", db_url]
        again = cli.invoke(app, ["tokens", "create", "ci-bot", *as_alice])
        assert again.exit_code != 0 and "already exists" in again.output
        bad_role = cli.invoke(app, ["tokens", "create", "x", "--role", "admin", *as_alice])
        assert bad_role.exit_code != 0 and "may not carry role(s) ['admin']" in bad_role.output
        wrong = cli.invoke(
            app,
            ["tokens", "create", "y", "--operator", "alice", "--password-stdin", "--db", db_url],
            input="not her password\n",
        )
        assert wrong.exit_code != 0 and "sign-in refused" in wrong.output
        assert "not her password" not in wrong.output
        anonymous = cli.invoke(app, ["tokens", "revoke", "ci-bot", "--db", db_url])
        assert anonymous.exit_code != 0 and "needs your API token" in anonymous.output

        revoked = cli.invoke(app, ["tokens", "revoke", "ci-bot", *as_alice])
        assert revoked.exit_code == 0, revoked.output
        assert "ci-bot" not in cli.invoke(app, ["tokens", "list", "--db", db_url]).output
        assert "ci-bot" in cli.invoke(app, ["tokens", "list", "--all", "--db", db_url]).output
        after = cli.invoke(app, ["tokens", "revoke", "ci-bot", *as_alice])
        assert after.exit_code != 0 and "unknown, revoked or expired" in after.output

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
            ("alice", "api_token.created", "token:ci-bot"),
            ("alice", "api_token.revoked", "token:ci-bot"),
        ]
        assert verify_audit(runtime.engine).ok
        # A name is free again once its token is revoked.
        issue_token(runtime, "alice", "ci-bot", ["viewer"], by=alice)
        with pytest.raises(TokenError, match="not valid"):
            issue_token(runtime, "alice", "y", ["root"], by=alice)
    finally:
        runtime.close()
