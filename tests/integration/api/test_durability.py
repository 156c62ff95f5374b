"""Durable before 2xx: a store that cannot commit gets the sender a 503 (so it retries), never
a 200; once the store is back, the retried delivery is logged, once."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import aiohttp
from sqlalchemy import event

from quote2cash.api.app import build_app
from quote2cash.connectors.stripe import verify_webhook
from quote2cash.engine.runtime import Runtime
from quote2cash.store.db import open_engine

from .conftest import callout_signature, log_size, logged, served, stripe_signature

STRIPE_SECRET = "whsec_api_durability"
CALLOUT_SECRET = "callout-durability"


def impatient_runtime(db_url: str) -> Runtime:
    """The store as the hub opens it, but giving up on a lock after 200 ms instead of 30 s."""
    engine = open_engine(db_url)

    @event.listens_for(engine, "connect")
    def _short_waits(dbapi_conn: Any, _record: Any) -> None:
        if engine.dialect.name == "sqlite":
            dbapi_conn.execute("PRAGMA busy_timeout=200")
        else:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET lock_timeout = '200ms'")
            dbapi_conn.commit()

    return Runtime(engine)


@contextmanager
def store_locked(db_url: str) -> Iterator[None]:
    """Another process's transaction holding the log so no one else can write it."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url) as pg:
            pg.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            yield
            pg.rollback()


def stripe_delivery(event_id: str) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "customer.created",
            "created": int(time.time()),
            "data": {"object": {"id": "cus_durable", "object": "customer", "metadata": {}}},
        }
    ).encode()
    return payload, {"Stripe-Signature": stripe_signature(payload, STRIPE_SECRET)}


def callout_delivery(opportunity_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "messageId": "m-durable",
            "eventType": "opportunity.closed_won",
            "opportunity": {"Id": opportunity_id, "Contract_Number__c": "CN-DUR-1"},
        }
    ).encode()
    return body, {"X-Q2C-Signature": callout_signature(body, CALLOUT_SECRET)}


async def test_webhooks_get_503_while_the_store_cannot_commit_then_200_once(
    runtime: Runtime, db_url: str, http: aiohttp.ClientSession
) -> None:
    hub = impatient_runtime(db_url)
    app = build_app(
        hub,
        stripe_verifier=partial(verify_webhook, secret=STRIPE_SECRET),
        callout_secret=CALLOUT_SECRET,
    )
    deliveries = {
        "/webhooks/stripe": stripe_delivery("evt_durable_1"),
        "/webhooks/salesforce": callout_delivery("006000000000DUR001"),
    }
    try:
        async with served(app) as base:
            with store_locked(db_url):
                for path, (body, headers) in deliveries.items():
                    async with http.post(base + path, data=body, headers=headers) as r:
                        answer = await r.json()
                        assert r.status == 503, path
                        assert answer["error"]["code"] == "store_unavailable", path
            assert log_size(runtime) == 0

            for path, (body, headers) in deliveries.items():
                async with http.post(base + path, data=body, headers=headers) as r:
                    assert (r.status, await r.json()) == (
                        200,
                        {"received": True, "duplicate": False},
                    ), path
                    # Acknowledged means committed: the fixture's own engine sees it now.
                    assert log_size(runtime) >= 1
    finally:
        hub.close()
    assert len(logged(runtime, event_id="evt_durable_1")) == 1
    assert len(logged(runtime, event_id="closed_won:006000000000DUR001")) == 1
    assert log_size(runtime) == 2


async def test_an_unreachable_store_is_a_503_and_unhealthy(http: aiohttp.ClientSession) -> None:
    hub = Runtime(open_engine("postgresql://postgres@127.0.0.1:1/nowhere"))
    app = build_app(
        hub,
        stripe_verifier=partial(verify_webhook, secret=STRIPE_SECRET),
        callout_secret=CALLOUT_SECRET,
    )
    try:
        async with served(app) as base:
            body, headers = stripe_delivery("evt_durable_2")
            async with http.post(f"{base}/webhooks/stripe", data=body, headers=headers) as r:
                answer = await r.json()
                assert r.status == 503 and answer["error"]["code"] == "store_unavailable"
                assert "postgres" not in json.dumps(answer)
            async with http.get(f"{base}/health") as r:
                assert r.status == 503
                assert (await r.json())["store"] == {"reachable": False}
    finally:
        hub.close()
