"""Every 500 the issue listed, against a live app on both stores: a signed body the hub cannot
understand is quarantined (202, kept whole, never lost); an unsigned one is refused and not
kept; odd ids and times in the path answer 4xx; any year 1..9999 is taken and stored sortable."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text

from quote2cash.api.app import build_app
from quote2cash.connectors.stripe import verify_webhook
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.queries import list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import events, quarantine
from support.identity import first_admin, token_of

from .conftest import callout_signature, served, stripe_signature

STRIPE_SECRET = "whsec_malformed_test"
CALLOUT_SECRET = "callout-malformed-test"
YEAR_5 = -62_000_000_000
"""Unix seconds in the year 5 (Stripe's ``created``)."""


def stripe_event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt_fine",
        "object": "event",
        "type": "invoice.finalized",
        "created": int(time.time()),
        "data": {"object": {"id": "in_1", "object": "invoice"}},
    }
    event.update(fields)
    return event


def as_body(value: Any) -> bytes:
    return json.dumps(value).encode()


NOT_UNDERSTOOD: dict[str, bytes] = {
    "deep nesting": b'{"id":"evt_d","type":"invoice.finalized","data":'
    + b"[" * 5000
    + b"]" * 5000
    + b"}",
    "nesting past the limit": b'{"id":"evt_n","data":{"object":{"x":'
    + b"[" * 40
    + b"]" * 40
    + b"}}}",
    "data not an object": as_body(stripe_event(id="evt_a", data=[1])),
    "data a string": as_body(stripe_event(id="evt_s", data="x")),
    "object not an object": as_body(stripe_event(id="evt_o", data={"object": [1]})),
    "metadata not an object": as_body(
        stripe_event(id="evt_m", data={"object": {"id": "sub_1", "metadata": [1]}})
    ),
    "lone surrogate in an id": b'{"id":"evt_\\ud800","type":"invoice.finalized","created":1,'
    b'"data":{"object":{}}}',
    "lone surrogate in data": b'{"id":"evt_u","type":"invoice.finalized","created":1,'
    b'"data":{"object":{"id":"in_\\udc00"}}}',
    "created 1e20": as_body(stripe_event(id="evt_c", created=1e20)),
    "created past year 9999": as_body(stripe_event(id="evt_c2", created=10**30)),
    "created a string": as_body(stripe_event(id="evt_c3", created="yesterday")),
    "top-level array": b"[1, 2]",
    "top-level null": b"null",
    "a number": b"42",
    "NaN": b'{"id":"evt_nan","type":"invoice.finalized","created":NaN,"data":{}}',
    "id a number": as_body(stripe_event(id=5)),
    "type an object": as_body(stripe_event(id="evt_t", type={"a": 1})),
    "NUL in the id": as_body(stripe_event(id="evt_\x00")),
    "not JSON": b"this is not json",
}


@pytest.fixture
async def base(runtime: Runtime) -> AsyncIterator[str]:
    app = build_app(
        runtime,
        stripe_verifier=partial(verify_webhook, secret=STRIPE_SECRET),
        callout_secret=CALLOUT_SECRET,
    )
    async with served(app) as url:
        yield url


def quarantined(runtime: Runtime) -> list[Any]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(select(quarantine).order_by(quarantine.c.id)))


def logged_count(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


async def post_stripe(
    http: aiohttp.ClientSession, base: str, body: bytes, signed: bool = True
) -> tuple[int, dict[str, Any]]:
    signature = stripe_signature(body, STRIPE_SECRET if signed else "whsec_someone_else")
    headers = {
        "Stripe-Signature": signature,
        "Authorization": "Bearer not-kept-anywhere",
        "Cookie": "session=not-kept-either",
    }
    async with http.post(f"{base}/webhooks/stripe", data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_signed_stripe_bodies_the_hub_cannot_understand_are_quarantined(
    runtime: Runtime, base: str, http: aiohttp.ClientSession
) -> None:
    answers = {name: await post_stripe(http, base, body) for name, body in NOT_UNDERSTOOD.items()}
    assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(
        NOT_UNDERSTOOD, 202
    )
    kept = quarantined(runtime)
    assert [bytes(row.body) for row in kept] == list(NOT_UNDERSTOOD.values())
    assert all(row.source == "billing" and row.status == "held" for row in kept)
    assert all(row.reason for row in kept)
    assert all("Stripe-Signature" in json.loads(row.headers) for row in kept)
    assert not any("not-kept" in row.headers for row in kept), "credentials are never kept"
    reasons = {name: answer["reason"] for name, (_, answer) in answers.items()}
    assert reasons["data not an object"] == "field 'data' is an array; expected an object"
    assert "field 'created' is 1e+20" in reasons["created 1e20"]
    assert "deeper than 32" in reasons["deep nesting"]
    assert "surrogate" in reasons["lone surrogate in data"]
    assert reasons["top-level array"] == "the body is an array; expected a JSON object"
    assert "NUL" in reasons["NUL in the id"]
    assert logged_count(runtime) == 0, "nothing half-understood reaches the log"

    again = await post_stripe(http, base, NOT_UNDERSTOOD["created 1e20"])
    assert again[0] == 202 and again[1]["duplicate"] is True
    assert again[1]["quarantined"] == answers["created 1e20"][1]["quarantined"]
    assert len(quarantined(runtime)) == len(NOT_UNDERSTOOD)


async def test_unsigned_bodies_are_refused_and_not_kept(
    runtime: Runtime, base: str, http: aiohttp.ClientSession
) -> None:
    for body in NOT_UNDERSTOOD.values():
        status, answer = await post_stripe(http, base, body, signed=False)
        assert status == 400 and answer["error"]["code"] == "signature_invalid"
    status, answer = await post_stripe(http, base, b"\xff\xfe not utf-8")
    assert status == 400 and answer["error"]["code"] == "invalid_body"
    assert quarantined(runtime) == [] and logged_count(runtime) == 0


async def test_signed_callouts_the_hub_cannot_understand_are_quarantined(
    runtime: Runtime, base: str, http: aiohttp.ClientSession
) -> None:
    bodies = {
        "deep nesting": b'{"messageId":"m","opportunity":' + b"[" * 5000 + b"]" * 5000 + b"}",
        "opportunity a string": as_body(
            {"messageId": "m-1", "eventType": "opportunity.closed_won", "opportunity": "006"}
        ),
        "messageId an object": as_body({"messageId": {"a": 1}, "opportunity": {"Id": "006"}}),
        "top-level array": b"[]",
        "lone surrogate": b'{"messageId":"m-\\ud800","eventType":"opportunity.closed_won"}',
    }
    for name, body in bodies.items():
        headers = {"X-Q2C-Signature": callout_signature(body, CALLOUT_SECRET)}
        async with http.post(f"{base}/webhooks/salesforce", data=body, headers=headers) as r:
            assert r.status == 202, name
            assert (await r.json())["quarantined"]
    assert [row.source for row in quarantined(runtime)] == ["crm"] * len(bodies)


@pytest.mark.parametrize("t", ["1" + "0" * 400, "9" * 13, "1e9", "-", "²"])
async def test_a_huge_or_odd_signature_time_is_refused_before_any_arithmetic(
    runtime: Runtime, base: str, http: aiohttp.ClientSession, t: str
) -> None:
    headers = {"X-Q2C-Signature": f"t={t},v1=00"}
    async with http.post(f"{base}/webhooks/salesforce", data=b"{}", headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "signature_invalid"
    assert quarantined(runtime) == []


async def test_events_from_any_year_are_taken_stored_sortable_and_read_back(
    runtime: Runtime, base: str, http: aiohttp.ClientSession
) -> None:
    bodies = [
        as_body(stripe_event(id="evt_year_5", created=YEAR_5)),
        as_body(stripe_event(id="evt_year_1", created=-62_135_596_800)),
        as_body(stripe_event(id="evt_year_9999", created=253_402_300_799)),
        as_body(stripe_event(id="evt_now")),
    ]
    for body in bodies:
        status, answer = await post_stripe(http, base, body)
        assert status == 200 and "rejected" not in answer, answer
    callout = as_body(
        {
            "messageId": "m-old",
            "eventType": "opportunity.closed_won",
            "eventTime": "0999-12-31T23:00:00+00:00",
            "opportunity": {"Id": "006OLD", "Contract_Number__c": "CN-OLD"},
        }
    )
    headers = {"X-Q2C-Signature": callout_signature(callout, CALLOUT_SECRET)}
    async with http.post(f"{base}/webhooks/salesforce", data=callout, headers=headers) as r:
        assert r.status == 200
    with runtime.engine.connect() as conn:
        by_time = [row.event_id for row in conn.execute(select(events).order_by(events.c.time))]
    assert by_time == ["evt_year_1", "evt_year_5", "closed_won:006OLD", "evt_now", "evt_year_9999"]

    token = token_of(runtime, first_admin(runtime), roles=("viewer",))
    async with http.get(f"{base}/v1/events", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        times = {e["id"]: e["time"] for e in (await r.json())["data"]}
    assert times["evt_year_5"].startswith("0005-")
    assert times["evt_year_1"].startswith("0001-01-01T00:00:00")

    seen: list[str] = []
    registry = Registry()

    async def handled(ctx: HandlerContext, event: Event) -> None:
        seen.append(event.id)

    registry.add("billing.*", handled)
    registry.add("crm.*", handled)
    await Worker(runtime, registry).drain()
    assert sorted(seen) == sorted(by_time), "the worker takes every stored time"


async def test_a_time_written_unpadded_by_an_older_release_is_still_read(
    runtime: Runtime,
) -> None:
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL stores times as timestamptz, never as text")
    from quote2cash.engine.events import new_event

    runtime.log.append(new_event("billing.invoice.finalized", "contract:CN-1", id="evt_legacy"))
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE events SET time = '5-04-19 09:46:40.000000'"))
    (row,) = list_events(runtime)
    assert (row.time.year, row.time.month, row.time.day) == (5, 4, 19)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/events/%C2%B2", 404),
        ("/v1/events/" + "9" * 40, 404),
        ("/v1/events/-1", 404),
        ("/v1/events/%00", 400),
        ("/v1/events?subject=%00", 400),
        ("/v1/invoices/" + "9" * 40, 404),
        ("/v1/invoices/%C2%B2", 404),
    ],
)
async def test_odd_ids_in_the_path_answer_4xx(
    runtime: Runtime, base: str, http: aiohttp.ClientSession, path: str, status: int
) -> None:
    token = token_of(runtime, first_admin(runtime), roles=("viewer",))
    async with http.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == status
        assert (await r.json())["error"]["message"]


def test_migration_0008_pads_times_an_older_release_wrote_unpadded(tmp_path: Path) -> None:
    from alembic import command

    from quote2cash.store.db import _alembic_config, migrate

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    runtime = Runtime.open(url)
    runtime.log.append(new_event("billing.invoice.finalized", "contract:CN-1", id="evt_old"))
    runtime.log.append(new_event("billing.invoice.finalized", "contract:CN-1", id="evt_new"))
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE events SET time = '5-04-19 09:46:40.000000' WHERE pos = 1"))
        conn.execute(text("UPDATE events SET time = '950-01-01 00:00:00.000000' WHERE pos = 2"))
    command.downgrade(_alembic_config(runtime.engine), "0007")
    migrate(runtime.engine)
    with runtime.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT time FROM events ORDER BY time"))]
    runtime.close()
    assert stored == ["0005-04-19 09:46:40.000000", "0950-01-01 00:00:00.000000"]
