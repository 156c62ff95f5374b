"""Webhook delivery checked by ``stripe.Webhook.construct_event``, retries, the async SDK."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from aiohttp import web

from .conftest import API_KEY, Sandbox


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0
    always_fail: bool = False
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    hits: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.always_fail or self.hits <= self.fail_first:
            return web.Response(status=500)
        self.deliveries.append((await request.text(), request.headers.get("Stripe-Signature", "")))
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


@pytest.fixture
async def async_client(sandbox: Sandbox) -> AsyncIterator[stripe.StripeClient]:
    http_client = stripe.AIOHTTPClient()
    client = stripe.StripeClient(
        api_key=API_KEY,
        base_addresses={"api": sandbox.base_url},
        http_client=http_client,
        max_network_retries=0,
    )
    yield client
    await http_client.close_async()


async def _wait_for(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


async def test_signed_delivery_accepted_by_construct_event(
    sandbox: Sandbox, receiver: Receiver, async_client: stripe.StripeClient
) -> None:
    endpoint = await async_client.v1.webhook_endpoints.create_async(
        params={"url": receiver.url, "enabled_events": ["customer.created", "invoice.paid"]}
    )
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in (await async_client.v1.webhook_endpoints.retrieve_async(endpoint.id))
    await async_client.v1.products.create_async(params={"name": "not subscribed"})
    customer = await async_client.v1.customers.create_async(
        params={"name": "Hooked", "metadata": {"crm": "A"}}
    )
    await _wait_for(lambda: len(receiver.deliveries) >= 1)
    payload, signature = receiver.deliveries[0]
    event = stripe.Webhook.construct_event(payload, signature, endpoint.secret)
    assert event.type == "customer.created"
    assert event.data.object.id == customer.id and event.data.object.metadata.crm == "A"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, signature, "whsec_wrong")
    listed = await async_client.v1.events.retrieve_async(event.id)
    assert listed.type == "customer.created"
    await asyncio.sleep(0.1)
    assert len(receiver.deliveries) == 1


async def test_failed_deliveries_are_retried_with_backoff_then_bounded(
    sandbox: Sandbox, receiver: Receiver, async_client: stripe.StripeClient
) -> None:
    sandbox.emulator.config.webhook_first_retry_delay = 0.05
    sandbox.emulator.config.webhook_max_attempts = 4
    receiver.fail_first = 2
    endpoint = await async_client.v1.webhook_endpoints.create_async(
        params={"url": receiver.url, "enabled_events": ["*"]}
    )
    await async_client.v1.customers.create_async(params={"name": "Retry me"})
    await _wait_for(lambda: len(receiver.deliveries) == 1)
    assert receiver.hits == 3
    stripe.Webhook.construct_event(*receiver.deliveries[0], endpoint.secret)
    receiver.always_fail = True
    await async_client.v1.customers.create_async(params={"name": "Never delivered"})
    await _wait_for(lambda: receiver.hits == 3 + 4)
    await asyncio.sleep(0.5)
    assert receiver.hits == 7
    attempts = json.loads(
        json.dumps(sandbox.raw("GET", "/_emulator/webhook_attempts", api_key=None)[2])
    )["data"]
    assert [a["status"] for a in attempts] == [500, 500, 200, 500, 500, 500, 500]


async def test_async_sdk_drives_the_emulator(async_client: stripe.StripeClient) -> None:
    customer = await async_client.v1.customers.create_async(
        params={
            "email": "async@x.example",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    product = await async_client.v1.products.create_async(params={"name": "Async seat"})
    price = await async_client.v1.prices.create_async(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": 1500,
            "recurring": {"interval": "year"},
        }
    )
    sub = await async_client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": price.id, "quantity": 3}]}
    )
    assert sub.status == "active"
    invoice = await async_client.v1.invoices.retrieve_async(sub.latest_invoice)
    assert (invoice.currency, invoice.amount_paid) == ("eur", 4500)
    found = await async_client.v1.customers.search_async(
        params={"query": "email:'async@x.example'"}
    )
    assert [c.id for c in found.data] == [customer.id]
    with pytest.raises(stripe.InvalidRequestError):
        await async_client.v1.customers.retrieve_async("cus_missing")


async def test_concurrent_requests_with_one_idempotency_key_create_once(
    async_client: stripe.StripeClient,
) -> None:
    params = {"name": "Race", "metadata": {"deal": "D-9"}}
    results = await asyncio.gather(
        *[
            async_client.v1.customers.create_async(
                params=params, options={"idempotency_key": "deal-D-9"}
            )
            for _ in range(8)
        ]
    )
    assert len({c.id for c in results}) == 1
    assert (
        sum(1 for c in results if c.last_response.headers.get("Idempotent-Replayed") == "true") == 7
    )
    listed = await async_client.v1.customers.list_async()
    assert [c.id for c in listed.data] == [results[0].id]
