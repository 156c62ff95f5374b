"""Stripe webhooks from the emulator: verified, logged once, committed before the 200."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial

import aiohttp
from sqlalchemy import select

from quote2cash.api.app import build_app
from quote2cash.connectors.stripe import verify_webhook
from quote2cash.engine.runtime import Runtime
from quote2cash.store.db import open_engine
from quote2cash.store.schema import events

from .conftest import (
    StripeSandbox,
    eventually,
    log_size,
    logged,
    served,
    stripe_signature,
)


def app_for(runtime: Runtime, secret: str):  # type: ignore[no-untyped-def]
    return build_app(runtime, stripe_verifier=partial(verify_webhook, secret=secret))


async def test_emulator_deliveries_land_in_the_log_once(
    runtime: Runtime, db_url: str, stripe_sandbox: StripeSandbox, http: aiohttp.ClientSession
) -> None:
    secret_holder: list[str] = []
    app = build_app(
        runtime,
        stripe_verifier=lambda payload, header: verify_webhook(payload, header, secret_holder[0]),
    )
    async with served(app) as base:
        secret_holder.append(stripe_sandbox.register(f"{base}/webhooks/stripe"))
        customer, subscription = await asyncio.to_thread(stripe_sandbox.subscribe, "CN-API-1")

        sent = [e.id for e in stripe_sandbox.sdk.v1.events.list(params={"limit": 100}).data]
        assert len(sent) >= 3

        async def logged_ids() -> set[str]:
            return {r.event_id for r in await asyncio.to_thread(logged, runtime, source="billing")}

        ids = await eventually(logged_ids, lambda found: set(sent) <= found)
        assert set(sent) <= ids

        attempts = await stripe_sandbox.attempts(http)
        assert attempts and all(a["status"] == 200 for a in attempts)
        assert sorted(a["event"] for a in attempts) == sorted(sent)

    activated = logged(runtime, type="billing.subscription.activated")
    assert [r.subject for r in activated] == ["contract:CN-API-1"]
    assert json.loads(activated[0].data)["object"]["id"] == subscription
    created = logged(runtime, type="billing.customer.created")
    assert [r.subject for r in created] == [f"billing:{customer}"]
    assert len(logged(runtime, source="billing")) == len(sent)

    # What was acknowledged is committed: another connection (another engine) sees it.
    other = open_engine(db_url)
    try:
        with other.connect() as conn:
            seen = set(conn.execute(select(events.c.event_id)).scalars())
    finally:
        other.dispose()
    assert set(sent) <= seen


async def test_redelivered_event_is_acknowledged_again_but_logged_once(
    runtime: Runtime, stripe_sandbox: StripeSandbox, http: aiohttp.ClientSession
) -> None:
    secret = stripe_sandbox.register("http://127.0.0.1:9/unreachable")
    await asyncio.to_thread(stripe_sandbox.subscribe, "CN-API-2")
    event_id = stripe_sandbox.sdk.v1.events.list(params={"limit": 1}).data[0].id
    payload = await stripe_sandbox.raw_event(http, event_id)
    answers = []
    async with served(app_for(runtime, secret)) as base:
        for _ in range(3):
            async with http.post(
                f"{base}/webhooks/stripe",
                data=payload,
                headers={
                    "Stripe-Signature": stripe_signature(payload, secret),
                    "Content-Type": "application/json",
                },
            ) as response:
                answers.append((response.status, await response.json()))
    assert answers == [
        (200, {"received": True, "duplicate": False}),
        (200, {"received": True, "duplicate": True}),
        (200, {"received": True, "duplicate": True}),
    ]
    assert len(logged(runtime, event_id=event_id)) == 1


async def test_forged_and_stale_deliveries_are_refused_and_not_logged(
    runtime: Runtime, stripe_sandbox: StripeSandbox, http: aiohttp.ClientSession
) -> None:
    secret = stripe_sandbox.register("http://127.0.0.1:9/unreachable")
    await asyncio.to_thread(stripe_sandbox.subscribe, "CN-API-3")
    event_id = stripe_sandbox.sdk.v1.events.list(params={"limit": 1}).data[0].id
    payload = await stripe_sandbox.raw_event(http, event_id)
    altered = payload.replace(b"CN-API-3", b"CN-EVIL-3")
    assert altered != payload
    cases = {
        "wrong secret": (payload, stripe_signature(payload, "whsec_forged")),
        "altered body": (altered, stripe_signature(payload, secret)),
        "stale timestamp": (payload, stripe_signature(payload, secret, int(time.time()) - 301)),
        "no header": (payload, ""),
        "garbage header": (payload, "t=abc,v1="),
    }
    async with served(app_for(runtime, secret)) as base:
        for name, (body, header) in cases.items():
            headers = {"Stripe-Signature": header} if header else {}
            async with http.post(f"{base}/webhooks/stripe", data=body, headers=headers) as r:
                answer = await r.json()
                assert r.status == 400, name
                assert answer["error"]["code"] == "signature_invalid", name
                assert secret not in json.dumps(answer), name
                assert len(answer["error"]["message"]) < 200, name
        stale = cases["stale timestamp"]
        async with http.post(
            f"{base}/webhooks/stripe", data=stale[0], headers={"Stripe-Signature": stale[1]}
        ) as r:
            assert "old" in (await r.json())["error"]["message"]
    assert log_size(runtime) == 0

    # The same event, properly signed and fresh, is accepted: the refusals were about trust.
    async with (
        served(app_for(runtime, secret)) as base,
        http.post(
            f"{base}/webhooks/stripe",
            data=payload,
            headers={"Stripe-Signature": stripe_signature(payload, secret)},
        ) as r,
    ):
        assert r.status == 200
    assert len(logged(runtime, event_id=event_id)) == 1
