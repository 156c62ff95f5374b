"""The signed Closed Won callout, received by a small aiohttp server in the test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from simple_salesforce import Salesforce

from quote2cash.sandbox.salesforce import verify

from .conftest import admin

SECRET = "q2c-callout-test-secret"


class Receiver:
    """Records every POST; answers with the next scripted status (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Condition()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self.arrived:
            self.requests.append((dict(request.headers), body))
            self.arrived.notify_all()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks/salesforce", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hooks/salesforce"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def wait_for(self, count: int, within: float = 10) -> None:
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.requests) >= count), within
            )


def independent_check(headers: dict[str, str], body: bytes) -> None:
    """Verify the documented scheme without the package's helper."""
    parts = dict(p.split("=", 1) for p in headers["X-Q2C-Signature"].split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(
        SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)


def configure(http, emulator, url: str, **extra: Any) -> None:
    admin(
        http,
        emulator,
        "PATCH",
        "config",
        {"callout_url": url, "callout_secret": SECRET, "callout_backoff_seconds": 0.05, **extra},
    )


async def test_closed_won_callout_is_signed_and_retried(sf: Salesforce, http, emulator):
    async with Receiver([503]) as receiver:
        configure(http, emulator, receiver.url)
        account = (await asyncio.to_thread(sf.Account.create, {"Name": "Won Co"}))["id"]
        opportunity = (
            await asyncio.to_thread(
                sf.Opportunity.create,
                {
                    "Name": "Won Co - New",
                    "AccountId": account,
                    "StageName": "Negotiation/Review",
                    "CloseDate": "2026-12-20",
                    "CurrencyIsoCode": "EUR",
                    "Amount": 1234.56,
                    "Contract_Number__c": "CN-42",
                },
            )
        )["id"]
        assert receiver.requests == []
        await asyncio.to_thread(sf.Opportunity.update, opportunity, {"StageName": "Closed Won"})
        await receiver.wait_for(2)
        await asyncio.to_thread(sf.Opportunity.update, opportunity, {"Description": "again"})

    (first_headers, first_body), (second_headers, second_body) = receiver.requests
    for headers, body in receiver.requests:
        independent_check(headers, body)
        assert verify(SECRET, headers["X-Q2C-Signature"], body)
        assert not verify("wrong-secret", headers["X-Q2C-Signature"], body)
        assert not verify(SECRET, headers["X-Q2C-Signature"], body.replace(b"1234.56", b"1.00"))
        assert headers["Content-Type"] == "application/json"
    assert (first_headers["X-Q2C-Delivery-Attempt"], second_headers["X-Q2C-Delivery-Attempt"]) == (
        "1",
        "2",
    )
    assert first_body == second_body
    message = json.loads(second_body, parse_float=Decimal)
    assert message["messageId"] == first_headers["X-Q2C-Message-Id"]
    assert message["eventType"] == "opportunity.closed_won"
    assert message["eventTime"].endswith("+0000")
    won = message["opportunity"]
    assert (won["Id"], won["AccountId"], won["StageName"]) == (opportunity, account, "Closed Won")
    assert won["Amount"] == Decimal("1234.56")
    assert (won["CurrencyIsoCode"], won["CloseDate"]) == ("EUR", "2026-12-20")
    assert won["Contract_Number__c"] == "CN-42"
    deliveries = admin(http, emulator, "GET", "callouts")
    assert [(d["status"], d["attempts"]) for d in deliveries] == [("delivered", 2)]


async def test_created_closed_won_triggers_and_rollback_does_not(sf: Salesforce, http, emulator):
    async with Receiver([]) as receiver:
        configure(http, emulator, receiver.url)
        rolled_back = await asyncio.to_thread(
            sf.restful,
            "composite/sobjects",
            method="POST",
            json={
                "allOrNone": True,
                "records": [
                    {
                        "attributes": {"type": "Opportunity"},
                        "Name": "Ghost",
                        "StageName": "Closed Won",
                        "CloseDate": "2026-12-01",
                    },
                    {"attributes": {"type": "Opportunity"}, "Name": "Broken"},
                ],
            },
        )
        assert [r["success"] for r in rolled_back] == [False, False]
        created = (
            await asyncio.to_thread(
                sf.Opportunity.create,
                {"Name": "Born won", "StageName": "Closed Won", "CloseDate": "2026-12-01"},
            )
        )["id"]
        await receiver.wait_for(1)
    assert len(receiver.requests) == 1
    message = json.loads(receiver.requests[0][1])
    assert message["opportunity"]["Id"] == created
    assert len(admin(http, emulator, "GET", "callouts")) == 1


async def test_delivery_gives_up_after_bounded_attempts(sf: Salesforce, http, emulator):
    async with Receiver([500, 500, 500, 500]) as receiver:
        configure(http, emulator, receiver.url, callout_max_attempts=3)
        await asyncio.to_thread(
            sf.Opportunity.create,
            {"Name": "Unlucky", "StageName": "Closed Won", "CloseDate": "2026-12-01"},
        )
        await receiver.wait_for(3)
        deadline = time.monotonic() + 10
        while True:
            deliveries = await asyncio.to_thread(admin, http, emulator, "GET", "callouts")
            if deliveries[0]["status"] != "pending" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
    assert deliveries[0]["status"] == "failed"
    assert deliveries[0]["attempts"] == 3 and deliveries[0]["lastStatusCode"] == 500
    assert len(receiver.requests) == 3


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=deadbeef"])
def test_verify_rejects_malformed_headers(header):
    assert not verify(SECRET, header, b"{}")


def test_verify_rejects_stale_timestamps():
    from quote2cash.sandbox.salesforce import sign

    stale = sign(SECRET, int(time.time()) - 3600, b"{}")
    assert not verify(SECRET, stale, b"{}")
    assert verify(SECRET, stale, b"{}", tolerance=7200)
