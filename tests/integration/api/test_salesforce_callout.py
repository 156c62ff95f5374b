"""The Salesforce emulator's real Closed-Won callout, verified by the hub's own check, logged
once; the same deal seen again by polling is not logged twice."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from contract.crm.salesforce_harness import SalesforceDesk
from quote2cash.api.app import build_app
from quote2cash.connectors.salesforce import SalesforceCrm
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.intake import poll_crm
from quote2cash.sandbox.systems import salesforce_config

from .conftest import callout_signature, eventually, log_size, logged, served, won_deal

SECRET = "q2c-api-callout-secret"


async def test_closed_won_callout_is_logged_and_polling_does_not_log_it_again(
    runtime: Runtime, crm_desk: SalesforceDesk, http: aiohttp.ClientSession
) -> None:
    async with served(build_app(runtime, callout_secret=SECRET)) as base:
        crm_desk.admin(
            "PATCH",
            "config",
            {
                "callout_url": f"{base}/webhooks/salesforce",
                "callout_secret": SECRET,
                "callout_backoff_seconds": 0.05,
            },
        )
        opportunity = await asyncio.to_thread(won_deal, crm_desk, "CN-SF-1")

        async def deliveries() -> list[dict[str, object]]:
            return await asyncio.to_thread(crm_desk.admin, "GET", "callouts")

        done = await eventually(
            deliveries, lambda ds: bool(ds) and all(d["status"] != "pending" for d in ds)
        )
    assert [(d["status"], d["attempts"], d["lastStatusCode"]) for d in done] == [
        ("delivered", 1, 200)
    ]
    rows = logged(runtime, event_id=f"closed_won:{opportunity}")
    assert [(r.source, r.type, r.subject) for r in rows] == [
        ("crm", "crm.opportunity.closed_won", "contract:CN-SF-1")
    ]
    assert json.loads(rows[0].data) == {
        "opportunity_id": opportunity,
        "contract_number": "CN-SF-1",
    }

    crm = SalesforceCrm(
        salesforce_config(crm_desk.emulator.instance_url, crm_desk.emulator.ca_path)
    )
    async with crm:
        seen = await crm.closed_won_deals()
        new = await poll_crm(runtime, crm)
    assert [o.external_ids["crm"] for o in seen.items] == [opportunity]
    assert new == 0
    assert len(logged(runtime, event_id=f"closed_won:{opportunity}")) == 1
    assert log_size(runtime) == 1


async def test_callouts_with_a_bad_signature_or_stale_timestamp_are_refused(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    body = json.dumps(
        {
            "messageId": "m-1",
            "eventType": "opportunity.closed_won",
            "eventTime": "2026-11-26T02:30:06.000+0000",
            "opportunity": {"Id": "006000000000001AAA", "Contract_Number__c": "CN-SF-2"},
        }
    ).encode()
    async with served(build_app(runtime, callout_secret=SECRET)) as base:
        # signed once the hub listens: its start-up does not eat into the 300 s tolerance
        now = int(time.time())
        cases = {
            "wrong secret": (body, callout_signature(body, "not-the-secret")),
            "altered body": (body.replace(b"CN-SF-2", b"CN-SF-9"), callout_signature(body, SECRET)),
            "stale": (body, callout_signature(body, SECRET, now - 301)),
            "from the future": (body, callout_signature(body, SECRET, now + 301)),
            "missing": (body, None),
            "malformed": (body, "v1=deadbeef"),
        }
        for name, (payload, header) in cases.items():
            headers = {"X-Q2C-Signature": header} if header else {}
            async with http.post(f"{base}/webhooks/salesforce", data=payload, headers=headers) as r:
                answer = await r.json()
                assert r.status == 400, name
                assert answer["error"]["code"] == "signature_invalid", name
                assert SECRET not in json.dumps(answer), name
        assert log_size(runtime) == 0

        signed = callout_signature(body, SECRET)
        async with http.post(
            f"{base}/webhooks/salesforce", data=body, headers={"X-Q2C-Signature": signed}
        ) as r:
            assert (r.status, await r.json()) == (200, {"received": True, "duplicate": False})
        async with http.post(
            f"{base}/webhooks/salesforce", data=body, headers={"X-Q2C-Signature": signed}
        ) as r:
            assert (r.status, await r.json()) == (200, {"received": True, "duplicate": True})
    rows = logged(runtime, source="crm")
    assert [(r.event_id, r.subject) for r in rows] == [
        ("closed_won:006000000000001AAA", "contract:CN-SF-2")
    ]
    assert rows[0].time.isoformat() == "2026-11-26T02:30:06+00:00"
