"""The decisions as POST routes on a live app: each taken by the token's operator, refused
without the role (403), with a bad body (400 naming the field), on an unknown id (404) or in
the wrong state (409); maker-checker holds through the API; every decision is audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import pytest

from quote2cash.api.app import build_app
from quote2cash.connectors.stripe import verify_webhook
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.quarantine import quarantine_delivery
from quote2cash.engine.queries import list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.identity import ROLES
from support.identity import first_admin, new_operator, token_of

from .conftest import served, stripe_signature

SECRET = "whsec_decisions"


class Client:
    """Calls as one operator's token."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        async with self.http.request(method, f"{self.base}{path}", data=data, headers=headers) as r:
            return r.status, await r.json()

    async def post(self, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        return await self.call("POST", path, {} if body is None else body)

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return await self.call("GET", path)


def refusing_registry() -> Registry:
    registry = Registry()

    @registry.on("*")
    async def handle(ctx: HandlerContext, event: Event) -> None:
        if not event.data.get("valid"):
            raise DataError(f"{event.subject}: field 'tax_id' missing; expected a VAT number")

    return registry


@pytest.fixture
async def desk(runtime: Runtime, http: aiohttp.ClientSession) -> AsyncIterator[dict[str, Client]]:
    admin = first_admin(runtime)
    people = {
        "maria": new_operator(runtime, admin, "maria", "operator"),
        "fiona": new_operator(runtime, admin, "fiona", "finance_approver"),
        "vic": new_operator(runtime, admin, "vic", "viewer"),
        "root": new_operator(runtime, admin, "root", *ROLES),
    }
    app = build_app(runtime, stripe_verifier=partial(verify_webhook, secret=SECRET))
    async with served(app) as base:
        clients = {name: Client(http, base, token_of(runtime, who)) for name, who in people.items()}
        clients["admin"] = Client(http, base, token_of(runtime, admin))
        yield clients


async def failed_positions(runtime: Runtime) -> dict[str, int]:
    for type_, subject in (
        ("crm.account.updated", "acct-1"),
        ("billing.invoice.finalized", "contract:CN-1"),
        ("erp.customer.updated", "acct-2"),
    ):
        runtime.log.append(new_event(type_, subject, {"amount": "10.00"}, correlation_id="c-1"))
    await Worker(runtime, refusing_registry()).drain()
    return {r.type: r.pos for r in list_events(runtime)}


async def test_exception_actions_through_the_api(runtime: Runtime, desk: dict[str, Client]) -> None:
    pos = await failed_positions(runtime)
    maria, vic = desk["maria"], desk["vic"]
    status, body = await vic.get("/v1/exceptions?recoverability=finance_approval")
    assert status == 200 and [e["type"] for e in body["data"]] == ["billing.invoice.finalized"]
    crm, invoice, erp = (
        pos["crm.account.updated"],
        pos["billing.invoice.finalized"],
        pos["erp.customer.updated"],
    )

    status, body = await vic.post(f"/v1/exceptions/{crm}/retry")
    assert status == 403 and "'operator'" in body["error"]["message"]
    status, body = await maria.post(f"/v1/exceptions/{invoice}/retry")
    assert status == 409 and body["error"]["code"] == "needs_finance_approval"
    status, body = await maria.post("/v1/exceptions/999999/retry")
    assert status == 404
    status, body = await maria.post("/v1/exceptions/abc/retry")
    assert status == 404
    status, body = await maria.post(f"/v1/exceptions/{crm}/retry", {"force": True})
    assert status == 400 and "force" in body["error"]["message"]
    assert (await maria.post(f"/v1/exceptions/{crm}/retry"))[0] == 200
    status, body = await maria.post(f"/v1/exceptions/{crm}/retry")
    assert status == 409 and "not in the exception queue" in body["error"]["message"]

    status, body = await maria.post(f"/v1/exceptions/{erp}/correct", {"data": "valid"})
    assert status == 400 and "$.data" in body["error"]["message"]
    status, body = await maria.post(f"/v1/exceptions/{erp}/correct", {"reason": "x"})
    assert status == 400 and "data" in body["error"]["message"]
    new_data = {"amount": "10.00", "valid": True}
    status, body = await maria.post(f"/v1/exceptions/{erp}/correct", {"data": new_data})
    assert status == 200 and body["corrected"] == erp

    status, body = await maria.post(f"/v1/exceptions/{invoice}/correct", {"data": new_data})
    assert status == 202 and body["request"]["finance_sensitive"] is True
    request_id = body["request"]["id"]
    status, body = await maria.post(f"/v1/replay-requests/{request_id}/approve")
    assert status == 403, "the requester never decides their own request"
    status, body = await desk["fiona"].post(
        f"/v1/replay-requests/{request_id}/approve", {"note": "checked the VAT number"}
    )
    assert status == 200 and body["request"]["status"] == "executed"
    await Worker(runtime, refusing_registry()).drain()
    assert {r.type: r.status for r in list_events(runtime)} == {
        "crm.account.updated": "exception",  # retried as it was: refused again
        "billing.invoice.finalized": "done",
        "erp.customer.updated": "done",
    }

    status, body = await vic.get("/v1/audit?limit=200")
    actions = [e["action"] for e in body["data"]]
    assert {"exception.retried", "exception.corrected", "replay.requested"} <= set(actions)
    corrected = next(e for e in body["data"] if e["action"] == "exception.corrected")
    assert corrected["actor"] == "maria"
    assert corrected["details"]["diff"] == [{"op": "add", "path": "/valid", "value": True}]
    first, rest = body["data"][:2], (await vic.get(f"/v1/audit?after={body['data'][1]['id']}"))
    assert [e["id"] for e in first + rest[1]["data"]] == [e["id"] for e in body["data"]]
    status, body = await vic.get("/v1/audit/verify")
    assert status == 200 and body["ok"] is True


async def test_replay_requests_dry_run_reject_and_resolve(
    runtime: Runtime, desk: dict[str, Client]
) -> None:
    pos = await failed_positions(runtime)
    maria = desk["maria"]
    status, body = await maria.post(
        "/v1/replay-requests", {"correlation_id": "c-1", "dry_run": True}
    )
    assert status == 200 and body["dry_run"] is True
    assert sorted(e["pos"] for e in body["data"]) == sorted(pos.values())
    assert (await maria.get("/v1/replay-requests"))[1]["count"] == 0, "a dry run files nothing"
    status, body = await maria.post("/v1/replay-requests", {"correlation_id": "c-1"})
    assert status == 400 and "'reason'" in body["error"]["message"]
    status, body = await maria.post(
        "/v1/replay-requests", {"since": "2026-01-01T00:00:00", "reason": "x"}
    )
    assert status == 400 and "since" in body["error"]["message"]
    status, body = await maria.post(
        "/v1/replay-requests", {"correlation_id": "c-1", "reason": "ERP fixed"}
    )
    assert status == 201 and body["request"]["event_count"] == 3
    request_id = body["request"]["id"]
    status, body = await desk["fiona"].post(f"/v1/replay-requests/{request_id}/reject", {})
    assert status == 400 and "note" in body["error"]["message"]
    status, body = await desk["fiona"].post(
        f"/v1/replay-requests/{request_id}/reject", {"note": "not yet"}
    )
    assert status == 200 and body["request"]["status"] == "rejected"
    status, body = await desk["fiona"].post(
        f"/v1/replay-requests/{request_id}/reject", {"note": "again"}
    )
    assert status == 409
    assert (await maria.get("/v1/replay-requests/9999"))[0] == 404

    erp = pos["erp.customer.updated"]
    status, body = await maria.post(f"/v1/exceptions/{erp}/resolve", {"reason": "  "})
    assert status == 400 and "reason" in body["error"]["message"]
    status, body = await maria.post(f"/v1/exceptions/{erp}/resolve", {"reason": "fixed in ERP"})
    assert status == 200
    status, body = await maria.get("/v1/events?status=resolved")
    assert [e["pos"] for e in body["data"]] == [erp]


async def test_systems_decisions(runtime: Runtime, desk: dict[str, Client]) -> None:
    maria, vic = desk["maria"], desk["vic"]
    assert (await vic.post("/v1/systems/erp/pause", {"reason": "close"}))[0] == 403
    status, body = await maria.post("/v1/systems/erp/pause", {})
    assert status == 400 and "reason" in body["error"]["message"]
    assert (await maria.post("/v1/systems/erp/pause", {"reason": "month-end close"}))[0] == 200
    status, body = await vic.get("/v1/systems")
    assert [(s["system"], s["paused"], s["changed_by"]) for s in body["data"]] == [
        ("erp", True, "maria")
    ]
    assert (await maria.post("/v1/systems/erp/resume"))[0] == 200
    window = {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T02:00:00Z"}
    status, body = await maria.post("/v1/systems/erp/windows", window)
    assert status == 400 and "reason" in body["error"]["message"]
    status, body = await maria.post(
        "/v1/systems/erp/windows", {**window, "starts_at": "2030-01-01T00:00:00", "reason": "x"}
    )
    assert status == 400 and "starts_at" in body["error"]["message"]
    status, body = await maria.post(
        "/v1/systems/erp/windows", {**window, "ends_at": "2029-01-01T00:00:00Z", "reason": "x"}
    )
    assert status == 409 and "must be after" in body["error"]["message"]
    status, body = await maria.post("/v1/systems/erp/windows", {**window, "reason": "upgrade"})
    assert status == 201 and body["window"]


async def test_quarantine_release_and_discard(
    runtime: Runtime, desk: dict[str, Client], http: aiohttp.ClientSession
) -> None:
    maria, vic = desk["maria"], desk["vic"]
    bad = b'{"id": "evt_q", "type": "invoice.finalized", "data": []}'
    async with http.post(
        f"{maria.base}/webhooks/stripe",
        data=bad,
        headers={"Stripe-Signature": stripe_signature(bad, SECRET)},
    ) as r:
        assert r.status == 202
        kept = (await r.json())["quarantined"]
    good = json.dumps(
        {
            "id": "evt_late",
            "type": "customer.created",
            "created": 1_700_000_000,
            "data": {"object": {"id": "cus_1", "object": "customer", "metadata": {}}},
        }
    ).encode()
    understood, _ = quarantine_delivery(runtime, "billing", good, {}, "an older hub failed")

    status, body = await vic.get("/v1/quarantine")
    assert [d["id"] for d in body["data"]] == [kept, understood]
    status, body = await vic.get(f"/v1/quarantine/{kept}")
    assert body["delivery"]["body"] == bad.decode() and "Stripe-Signature" in json.dumps(body)
    assert (await vic.get("/v1/quarantine/99999"))[0] == 404
    assert (await vic.post(f"/v1/quarantine/{kept}/discard", {"reason": "test"}))[0] == 403

    status, body = await maria.post(f"/v1/quarantine/{kept}/release")
    assert status == 409 and "field 'data' is an array" in body["error"]["message"]
    status, body = await maria.post(f"/v1/quarantine/{understood}/release", {"note": "ok now"})
    assert status == 200 and body["event_id"] == "evt_late"
    assert [r.id for r in list_events(runtime)] == ["evt_late"]
    status, body = await maria.post(f"/v1/quarantine/{kept}/discard", {"reason": "sent by a test"})
    assert status == 200
    status, body = await maria.post(f"/v1/quarantine/{kept}/discard", {"reason": "again"})
    assert status == 409
    status, body = await vic.get("/v1/quarantine?status=all")
    assert [(d["id"], d["status"], d["decided_by"]) for d in body["data"]] == [
        (kept, "discarded", "maria"),
        (understood, "released", "maria"),
    ]
    actions = [e["action"] for e in (await vic.get("/v1/audit"))[1]["data"]]
    assert "quarantine.released" in actions and "quarantine.discarded" in actions


async def test_tokens_and_operators(runtime: Runtime, desk: dict[str, Client]) -> None:
    maria, vic, admin = desk["maria"], desk["vic"], desk["admin"]
    status, body = await vic.post("/v1/tokens", {"name": "vic-ci", "roles": ["operator"]})
    assert status == 403, "a token never carries more than the credential that asks for it"
    status, body = await maria.post("/v1/tokens", {"name": "maria ci", "roles": ["operator"]})
    assert status == 400 and "name" in body["error"]["message"]
    status, body = await maria.post(
        "/v1/tokens", {"name": "maria-ci", "roles": ["viewer"], "ttl_days": 7}
    )
    assert status == 201 and body["owner"] == "maria"
    fresh = Client(maria.http, maria.base, body["token"])
    assert (await fresh.get("/v1/events"))[0] == 200
    assert (await fresh.post("/v1/systems/erp/pause", {"reason": "x"}))[0] == 403
    status, body = await maria.get("/v1/tokens")
    assert {t["owner"] for t in body["data"]} == {"maria"}
    assert all("token" not in t for t in body["data"]), "a token's value is shown once only"
    assert (await maria.post("/v1/tokens/maria-ci/revoke"))[0] == 200
    assert (await fresh.get("/v1/events"))[0] == 401

    new = {"name": "olga", "roles": ["operator"], "email": "olga@example.com"}
    assert (await maria.post("/v1/operators", new))[0] == 403
    assert (await maria.get("/v1/operators"))[0] == 403
    status, body = await admin.post("/v1/operators", {**new, "roles": ["chief"]})
    assert status == 400 and "roles" in body["error"]["message"]
    status, body = await admin.post("/v1/operators", new)
    assert status == 201 and body["one_time_password"]
    status, body = await admin.post("/v1/operators/olga/roles", {"roles": ["viewer"]})
    assert status == 200
    assert (await admin.post("/v1/operators/olga/disable"))[0] == 200
    status, body = await admin.get("/v1/operators")
    olga = next(o for o in body["data"] if o["name"] == "olga")
    assert olga["roles"] == ["viewer"] and olga["disabled"] is True
