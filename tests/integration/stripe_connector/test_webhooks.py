"""Signed webhooks: real deliveries from the emulator verify; forgeries and replays do not."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import SecretStr

from quote2cash.canonical import Customer, Ref
from quote2cash.connectors.stripe import StripeBilling, verify_webhook
from quote2cash.engine.errors import AuthError, DataError
from quote2cash.sandbox.stripe import sign

from .conftest import Sandbox

SECRET = "whsec_test_connector_secret_123456"


@dataclass
class Receiver:
    url: str = ""
    deliveries: list[tuple[bytes, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((await request.read(), request.headers["Stripe-Signature"]))
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/hooks"
    yield state
    await runner.cleanup()


async def _wait_for(receiver: Receiver, count: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while len(receiver.deliveries) < count:
        assert time.monotonic() < deadline, f"only {len(receiver.deliveries)} deliveries arrived"
        await asyncio.sleep(0.02)


async def test_emulator_deliveries_verify_and_match_list_events(
    sandbox: Sandbox, receiver: Receiver, billing: StripeBilling
) -> None:
    endpoint = sandbox.sdk.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["*"]}
    )
    secret = SecretStr(endpoint.secret or "")
    customer_id = await billing.upsert_customer(
        Customer(global_id="c-hook", name="Hooked"),
        idempotency_key="evt-1",
    )
    await _wait_for(receiver, 1)
    events = [verify_webhook(body, header, secret) for body, header in receiver.deliveries]
    assert [e.type for e in events] == ["billing.customer.created"]
    assert events[0].subject == customer_id
    assert events[0].data["object"]["metadata"]["hub_global_id"] == "c-hook"
    listed = await billing.list_events()
    assert [e.id for e in listed.items] == [events[0].id]
    assert listed.items[0].type == events[0].type and listed.items[0].subject == customer_id
    assert Ref.external("billing", customer_id).id_in("billing") == events[0].subject


def _event_body(event_id: str = "evt_test_1") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "invoice.paid",
            "created": 1767225600,
            "data": {
                "object": {
                    "id": "in_1",
                    "object": "invoice",
                    "customer": "cus_1",
                    "parent": {"subscription_details": {"subscription": "sub_1"}},
                }
            },
        }
    ).encode()


def test_a_good_signature_gives_the_hub_event() -> None:
    body = _event_body()
    event = verify_webhook(body, sign(body.decode(), SECRET), SECRET)
    assert (event.id, event.type, event.subject) == ("evt_test_1", "billing.invoice.paid", "sub_1")
    assert event.data["stripe_type"] == "invoice.paid"
    assert event.created.isoformat() == "2026-01-01T00:00:00+00:00"


def test_forged_or_replayed_deliveries_are_auth_errors_without_the_secret() -> None:
    body = _event_body()
    good = sign(body.decode(), SECRET)
    cases = {
        "wrong secret": (body, sign(body.decode(), "whsec_someone_else")),
        "altered body": (body.replace(b"invoice.paid", b"invoice.voided"), good),
        "stale": (body, sign(body.decode(), SECRET, int(time.time()) - 301)),
        "no header": (body, ""),
        "garbage header": (body, "nonsense"),
    }
    for name, (payload, header) in cases.items():
        with pytest.raises(AuthError) as info:
            verify_webhook(payload, header, SecretStr(SECRET))
        message = str(info.value)
        assert info.value.system == "billing", name
        assert SECRET not in message and SECRET not in repr(info.value.args), name
        if name == "stale":
            assert "300 s old" in message
        else:
            assert "old" not in message, name


def test_a_signed_body_that_is_not_an_event_is_a_data_error() -> None:
    for body in (b"not json", b'{"hello": "world"}'):
        with pytest.raises(DataError):
            verify_webhook(body, sign(body.decode(), SECRET), SECRET)


def test_connector_uses_its_configured_secret(sandbox: Sandbox) -> None:
    connector = StripeBilling.for_sandbox(sandbox.base_url, webhook_secret=SECRET)
    body = _event_body("evt_cfg")
    assert connector.verify_webhook(body, sign(body.decode(), SECRET)).id == "evt_cfg"
    with pytest.raises(AuthError):
        connector.verify_webhook(body, sign(body.decode(), "whsec_other"))
