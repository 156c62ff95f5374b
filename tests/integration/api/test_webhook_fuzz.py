"""Fuzzing the webhooks with SIGNED bodies (schemathesis cannot sign): any body, any shape of a
Stripe event or a Salesforce callout with any field replaced by any JSON value, is answered 200
(logged, or kept as a rejected record) or 202 (quarantined), never a 5xx; nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import time
from functools import partial
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from quote2cash.api.app import build_app
from quote2cash.connectors.stripe import verify_webhook
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import events, quarantine

from .conftest import callout_signature, served, stripe_signature

SECRET = "whsec_fuzz"
CALLOUT = "callout-fuzz"
EXAMPLES = 400 if os.environ.get("Q2C_LONG") == "1" else 60

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def stripe_base() -> dict[str, Any]:
    return {
        "id": "evt_fuzz",
        "object": "event",
        "type": "customer.subscription.created",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": "sub_fuzz",
                "object": "subscription",
                "customer": "cus_fuzz",
                "metadata": {"contract_number": "CN-FUZZ"},
                "items": {"data": [{"price": {"id": "price_1"}, "quantity": 2}]},
            },
            "previous_attributes": {},
        },
    }


def callout_base() -> dict[str, Any]:
    return {
        "messageId": "m-fuzz",
        "eventType": "opportunity.closed_won",
        "eventTime": "2026-11-26T10:00:00.000+0000",
        "opportunity": {"Id": "006FUZZ", "Contract_Number__c": "CN-FUZZ"},
    }


def paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(paths(child, (*prefix, key)))
    return out


def replaced(base: dict[str, Any], path: tuple[str, ...], new: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(base))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return body


def mutated(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    edits = st.tuples(st.sampled_from(paths(base)), values)
    shaped = edits.map(lambda e: json.dumps(replaced(base, *e)).encode())
    raw = st.one_of(values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64))
    return st.one_of(shaped, shaped, raw)


def count(runtime: Runtime, table: Any) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_signed_fuzz_never_gets_a_server_error(runtime: Runtime) -> None:
    app = build_app(
        runtime,
        stripe_verifier=partial(verify_webhook, secret=SECRET),
        callout_secret=CALLOUT,
    )
    answers: list[tuple[int, bytes]] = []
    async with served(app) as base, aiohttp.ClientSession() as http:
        loop = asyncio.get_running_loop()

        async def post(route: str, header: str, signature: str, body: bytes) -> None:
            async with http.post(f"{base}{route}", data=body, headers={header: signature}) as r:
                answers.append((r.status, body))

        def send(route: str, header: str, body: bytes, secret: str) -> None:
            signature = (stripe_signature if "stripe" in route else callout_signature)(body, secret)
            asyncio.run_coroutine_threadsafe(post(route, header, signature, body), loop).result(30)

        fuzz = settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )

        @fuzz
        @given(mutated(stripe_base()))
        def stripe_bodies(body: bytes) -> None:
            send("/webhooks/stripe", "Stripe-Signature", body, SECRET)

        @fuzz
        @given(mutated(callout_base()))
        def callout_bodies(body: bytes) -> None:
            send("/webhooks/salesforce", "X-Q2C-Signature", body, CALLOUT)

        await asyncio.to_thread(stripe_bodies)
        await asyncio.to_thread(callout_bodies)
    server_errors = [(s, b[:200]) for s, b in answers if s >= 500]
    assert server_errors == []
    assert {s for s, _ in answers} <= {200, 202, 400}
    refused = [b for s, b in answers if s == 400]
    assert all(_not_utf8(b) for b in refused), "only a body whose signature cannot be checked"
    assert count(runtime, quarantine) > 0 and count(runtime, events) > 0


def _not_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
