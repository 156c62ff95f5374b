"""One bad record never stops intake: polling (CRM deals, amendment requests, billing events)
and webhooks log the good records, and put the bad one in the exception queue with a reason
naming the record, the field and what was expected; nothing is lost, the cursor moves on."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from functools import partial
from typing import Any

import aiohttp

from contract.crm.salesforce_harness import Line, SalesforceDesk
from quote2cash.api.app import build_app
from quote2cash.connectors.salesforce import SalesforceCrm
from quote2cash.connectors.stripe import StripeBilling, verify_webhook
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.queries import failed_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows.intake import (
    CLOSED_WON,
    REJECTED,
    hold_rejected_record,
    poll_amendments,
    poll_billing,
    poll_crm,
)
from quote2cash.masterdata.xref import XrefStore
from quote2cash.sandbox.systems import salesforce_config

from .conftest import (
    STRIPE_KEY,
    StripeSandbox,
    callout_signature,
    logged,
    served,
    stripe_signature,
)

SECRET = "q2c-intake-secret"
TOO_LONG = "C-" + "9" * 400
"""A contract number billing keeps, longer than any subject the hub can log."""


def crm_for(desk: SalesforceDesk) -> SalesforceCrm:
    return SalesforceCrm(salesforce_config(desk.emulator.instance_url, desk.emulator.ca_path))


async def exceptions_after_processing(runtime: Runtime) -> dict[str, tuple[str | None, str]]:
    """Run the worker (rejected records go to the exception queue; the rest is not under test):
    subject -> (category, reason) of every event waiting for a person."""
    registry = Registry()

    async def rejected(ctx: HandlerContext, event: Event) -> None:
        await hold_rejected_record(ctx, event, None)  # type: ignore[arg-type]

    async def taken(ctx: HandlerContext, event: Event) -> None:
        """Good records are logged; what the flows then do is tested elsewhere."""

    registry.add(REJECTED, rejected)
    for kind in (CLOSED_WON, "crm.amendment.requested", "billing.*"):
        registry.add(kind, taken)
    await Worker(runtime, registry).drain()
    return {e.subject: (e.category, e.last_error or "") for e in failed_events(runtime)}


async def test_a_won_deal_without_products_never_stops_crm_polling(
    runtime: Runtime, crm_desk: SalesforceDesk
) -> None:
    account = crm_desk.account("Intake GmbH", "EUR")
    product = crm_desk.product("SEAT-INTAKE", "Seat", {"EUR": "100.00"})
    empty = crm_desk.deal(account, "EUR", [], name="No products", Contract_Number__c="CN-EMPTY")
    good = crm_desk.deal(
        account, "EUR", [Line(product, 3, "100.00")], Contract_Number__c="CN-GOOD-1"
    )
    async with crm_for(crm_desk) as crm:
        assert await poll_crm(runtime, crm) == 2
        assert [r.subject for r in logged(runtime, type=CLOSED_WON)] == ["contract:CN-GOOD-1"]
        assert logged(runtime, event_id=f"closed_won:{good}")
        waiting = await exceptions_after_processing(runtime)
        assert list(waiting) == [f"rejected:crm:Opportunity {empty}"]
        category, reason = waiting[f"rejected:crm:Opportunity {empty}"]
        assert category == "data"
        assert f"Opportunity {empty}" in reason and "OpportunityLineItems" in reason
        assert "needs at least one" in reason
        [row] = logged(runtime, type=REJECTED)
        assert json.loads(row.data)["raw"]["Id"] == empty  # the record itself is kept

        # Later deals are still booked: the poll goes on past the bad one.
        later = crm_desk.deal(
            account, "EUR", [Line(product, 1, "100.00")], Contract_Number__c="CN-GOOD-2"
        )
        assert await poll_crm(runtime, crm) == 1
        assert logged(runtime, event_id=f"closed_won:{later}")

        # The rep adds a product: the fixed deal is taken in by the next poll.
        crm_desk.sf.OpportunityLineItem.create(
            {"OpportunityId": empty, "Product2Id": product, "Quantity": 2, "UnitPrice": "100.00"}
        )
        await poll_crm(runtime, crm)
        assert logged(runtime, event_id=f"closed_won:{empty}")


async def test_an_unreadable_amendment_request_never_stops_amendment_polling(
    runtime: Runtime, crm_desk: SalesforceDesk
) -> None:
    account = crm_desk.account("Amend GmbH", "EUR")
    product = crm_desk.product("SEAT-AMEND", "Seat", {"EUR": "100.00"})
    subscription = crm_desk.subscription(account, 3, "sub_intake")
    bad = crm_desk.request_seat_change(subscription, None, 5, date(2026, 12, 1))  # type: ignore[arg-type]
    good = crm_desk.request_seat_change(subscription, product, 4, date(2026, 12, 1))
    async with crm_for(crm_desk) as crm:
        assert await poll_amendments(runtime, crm, XrefStore(runtime.engine, runtime.clock)) == 2
    assert logged(runtime, event_id=f"amendment:{good}")
    waiting = await exceptions_after_processing(runtime)
    subject = f"rejected:crm:Amendment_Request__c {bad}"
    assert list(waiting) == [subject]
    assert "Billing_Subscription_Item_Id__c or Product__c" in waiting[subject][1]


def _subscribe_with_too_long_a_contract(sandbox: StripeSandbox) -> None:
    customer = sandbox.sdk.v1.customers.create(params={"name": "Long Number Ltd"})
    product = sandbox.sdk.v1.products.create(params={"name": "Seat"})
    price = sandbox.sdk.v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
        }
    )
    sandbox.sdk.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": 1}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "metadata": {"contract_number": TOO_LONG},
        }
    )


async def test_billing_events_the_hub_cannot_log_never_stop_billing_polling(
    runtime: Runtime, stripe_sandbox: StripeSandbox
) -> None:
    await asyncio.to_thread(_subscribe_with_too_long_a_contract, stripe_sandbox)
    await asyncio.to_thread(stripe_sandbox.subscribe, "CN-FINE-1")
    sent = [e.id for e in stripe_sandbox.sdk.v1.events.list(params={"limit": 100}).data]
    async with StripeBilling.for_sandbox(stripe_sandbox.base_url, api_key=STRIPE_KEY) as billing:
        assert await poll_billing(runtime, billing) == len(sent)
    fine = [r for r in logged(runtime, source="billing") if r.subject == "contract:CN-FINE-1"]
    assert {r.type for r in fine} >= {"billing.subscription.activated"}
    rejected = logged(runtime, type=REJECTED)
    assert rejected, "the long contract's events are kept for a person"
    waiting = await exceptions_after_processing(runtime)
    assert len(waiting) == len(rejected)
    assert all("subject" in reason and "too long" in reason for _, reason in waiting.values())
    assert len(logged(runtime, source="billing")) == len(sent)  # every event logged once


async def test_signed_webhooks_the_hub_cannot_take_are_kept_not_refused(
    runtime: Runtime, stripe_sandbox: StripeSandbox, http: aiohttp.ClientSession
) -> None:
    secret = stripe_sandbox.register("http://127.0.0.1:9/unreachable")
    await asyncio.to_thread(_subscribe_with_too_long_a_contract, stripe_sandbox)
    event_id = stripe_sandbox.sdk.v1.events.list(params={"limit": 1}).data[0].id
    payload = await stripe_sandbox.raw_event(http, event_id)
    not_an_event = json.dumps({"object": "event", "data": {}}).encode()
    callouts: dict[str, Any] = {
        "other event": {"messageId": "m-2", "eventType": "account.updated", "opportunity": {}},
        "no opportunity id": {"messageId": "m-3", "eventType": "opportunity.closed_won"},
    }
    app = build_app(
        runtime,
        stripe_verifier=partial(verify_webhook, secret=secret),
        callout_secret=SECRET,
    )
    answers = []
    async with served(app) as base:
        for body in (payload, not_an_event):
            headers = {"Stripe-Signature": stripe_signature(body, secret)}
            async with http.post(f"{base}/webhooks/stripe", data=body, headers=headers) as r:
                answers.append((r.status, await r.json()))
        for message in callouts.values():
            body = json.dumps(message).encode()
            headers = {"X-Q2C-Signature": callout_signature(body, SECRET)}
            async with http.post(f"{base}/webhooks/salesforce", data=body, headers=headers) as r:
                answers.append((r.status, await r.json()))
        body = b"not json"
        headers = {"X-Q2C-Signature": callout_signature(body, SECRET)}
        async with http.post(f"{base}/webhooks/salesforce", data=body, headers=headers) as r:
            unclear = (r.status, await r.json())
    assert [status for status, _ in answers] == [200] * 4
    assert all(a["received"] and a["rejected"] for _, a in answers), answers
    assert unclear[0] == 202 and unclear[1]["quarantined"], "not understood: quarantined"
    assert "not valid UTF-8 JSON" in unclear[1]["reason"]
    waiting = await exceptions_after_processing(runtime)
    assert len(waiting) == 4
    reasons = " | ".join(reason for _, reason in waiting.values())
    assert f"event {event_id}" in reasons and "too long" in reasons
    assert "no id or type" in reasons
    assert "callout m-2" in reasons and "field 'eventType' is 'account.updated'" in reasons
    assert "callout m-3" in reasons and "field 'opportunity.Id' is missing" in reasons
    kept = [json.loads(r.data)["raw"]["body"] for r in logged(runtime, type=REJECTED)]
    assert payload.decode() in kept
