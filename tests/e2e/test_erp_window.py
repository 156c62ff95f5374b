"""ERP maintenance window during processing: the ERP's work is held, in order, and drains when
the window ends; the CRM and billing work that does not need the ERP goes on meanwhile.

Three contracts: C was fully on board before the window (its invoice posted); A had reached
billing (customer, subscription, CRM updated) when the window began, so its ERP booking and
invoice posting wait; B was closed during the window: its billing customer and subscription are
created and the CRM hears back at once, while its ERP customer, then its booking and invoice,
follow when the window ends (the default onboarding policy, ``config/onboarding.yaml``). During
the window C's customer has a card declined, which the CRM hears at once, then pays, which
waits for the ERP. Every system is read directly: Stripe through the SDK, Tryton over JSON-RPC,
Salesforce through simple-salesforce.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from sqlalchemy import select

from contract.crm.salesforce_harness import Line
from e2e.conftest import CONFIG, STRIPE_KEY, Hub, World, sf_products
from quote2cash.engine.control import pause_system, resume_system, schedule_window
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.systems import SystemLimits
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import poll_crm
from quote2cash.identity import Operator
from quote2cash.sandbox.seed import seed_salesforce, seed_stripe
from quote2cash.store.schema import event_state, events, steps, subjects

US = {
    "BillingStreet": "500 Pine Ave",
    "BillingCity": "Portland",
    "BillingState": "OR",
    "BillingPostalCode": "97204",
    "BillingCountryCode": "US",
    "BillingCountry": "United States",
}
DE = {
    "BillingStreet": "Mönckebergstraße 7",
    "BillingCity": "Hamburg",
    "BillingPostalCode": "20095",
    "BillingCountryCode": "DE",
    "BillingCountry": "Germany",
}

ERP_ADMIN = Operator("erp-admin", frozenset({"operator"}), via="token")
"""The ERP team's operator, as their token authenticates them."""


def empty_crm_and_billing(world: World) -> None:
    requests.post(f"{world.stripe_url}/_emulator/reset", timeout=10).raise_for_status()
    seed_stripe(world.stripe_url, STRIPE_KEY)
    world.desk.reset()


@pytest.fixture
async def hub(world: World, tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub installed now: the CRM and billing emulators start empty (catalog seeded again),
    and the ERP takes one step at a time (the sandbox ERP is SQLite: one writer)."""
    empty_crm_and_billing(world)
    await seed_salesforce(world.sf_url, world.sf_ca)
    runtime = Runtime.open(
        f"sqlite:///{tmp_path / 'hub.sqlite'}",
        sqlite_synchronous="NORMAL",
        limits={"erp": SystemLimits(max_concurrency=1)},
    )
    systems = world.systems()
    async with systems:
        deps = FlowDeps.build(runtime, systems, CONFIG)
        yield Hub(runtime, deps, Worker(runtime, build_registry(deps)), systems)
    runtime.close()


async def drain_all(hub: Hub, seconds: float = 60.0) -> None:
    """Settle until nothing is pending outside a held subject (retries may be due a bit later)."""
    deadline = time.monotonic() + seconds
    while True:
        await hub.settle()
        with hub.runtime.engine.connect() as conn:
            left = conn.execute(
                select(event_state.c.pos)
                .join(subjects, subjects.c.subject == event_state.c.subject)
                .where(event_state.c.status == "pending", subjects.c.held_by.is_(None))
            ).all()
        if not left:
            return
        assert time.monotonic() < deadline, f"{len(left)} events still pending"
        await asyncio.sleep(0.2)


def waiting_on(hub: Hub) -> dict[str, str | None]:
    with hub.runtime.engine.connect() as conn:
        return dict(conn.execute(select(subjects.c.subject, subjects.c.waiting_on)).all())


def steps_since(hub: Hub, since: datetime) -> list[tuple[str, int, str, str | None, datetime]]:
    """(subject, sequence, step, system, completed_at) of steps completed since ``since``."""
    with hub.runtime.engine.connect() as conn:
        rows = conn.execute(
            select(
                events.c.subject,
                events.c.sequence,
                steps.c.name,
                steps.c.system,
                steps.c.completed_at,
            )
            .join(steps, steps.c.event_pos == events.c.pos)
            .where(steps.c.completed_at >= since)
            .order_by(steps.c.completed_at)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def erp_snapshot(world: World) -> dict[str, Any]:
    """What the ERP holds: parties, bookings, customer invoices and their states, payments."""
    async with world.erp_client() as erp:
        invoices = await erp.model("account.invoice").search_read(
            [("type", "=", "out")], ["reference", "state", "total_amount"]
        )
        return {
            "parties": len(await erp.model("party.party").search([])),
            "sales": len(await erp.model("sale.sale").search([])),
            "invoices": sorted((i["reference"], i["state"]) for i in invoices),
            "payments": len(
                await erp.model("account.move").search([("description", "like", "q2c-payment:%")])
            ),
        }


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


async def test_erp_work_is_held_in_order_while_crm_and_billing_continue(
    world: World, hub: Hub
) -> None:
    desk, client, runtime = world.desk, world.stripe(), hub.runtime
    products = sf_products(desk)

    # C: on board before the window, its first invoice posted in the ERP and open.
    account_c = desk.account("Cascade Analytics Inc.", currency="USD", **US)
    desk.deal(
        account_c,
        "USD",
        [Line(products["PLAT-SEAT"], 4, "49.00")],
        **{"Contract_Number__c": "C-WIN-C"},
    )
    await drain_all(hub)
    customer_c = only(
        [
            c
            for c in client.v1.customers.list().auto_paging_iter()
            if c.name == "Cascade Analytics Inc."
        ]
    )
    invoice_c = only(list(client.v1.invoices.list(params={"customer": customer_c.id}).data))
    assert invoice_c.status == "open" and invoice_c.total == 19600

    # A: closed, and taken to billing by the hub; then the window starts.
    account_a = desk.account("Brandt Logistik GmbH", currency="EUR", **DE)
    opp_a = desk.deal(
        account_a,
        "EUR",
        [Line(products["PLAT-SEAT"], 10, "45.00"), Line(products["SUPPORT-PREM"], 1, "179.00")],
        Contract_Number__c="C-WIN-A",
    )
    assert hub.systems.crm is not None
    await poll_crm(runtime, hub.systems.crm)
    await hub.worker.drain()
    erp_before = await erp_snapshot(world)

    pause_system(runtime, "erp", by=ERP_ADMIN, reason="ERP upgrade")
    window_start = runtime.clock.now()

    account_b = desk.account("Summit Foods LLC", currency="USD", **US)
    opp_b = desk.deal(
        account_b, "USD", [Line(products["PLAT-SEAT"], 6, "49.00")], Contract_Number__c="C-WIN-B"
    )
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(invoice_c.id, params={"payment_method": "pm_card_chargeDeclined"})
    await hub.settle()

    # The CRM heard of C's declined card while the ERP was away.
    assert [
        (r["Status__c"], Decimal(str(r["Balance__c"]))) for r in desk.invoices(invoice_c.number)
    ] == [("Open", Decimal("196.00"))]
    client.v1.invoices.pay(invoice_c.id, params={"payment_method": "pm_card_visa"})
    await hub.settle()

    # Nothing reached the ERP during the window; CRM work did.
    assert await erp_snapshot(world) == erp_before
    during = steps_since(hub, window_start)
    assert [s for s in during if s[3] == "erp"] == []
    assert ("contract:C-WIN-C", "crm.publish_failed", "crm") in {(s[0], s[2], s[3]) for s in during}

    # A is live in billing and the CRM knows it; its booking and invoice wait, in order.
    subscription_a = only(
        [
            s
            for s in client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter()
            if s.metadata.to_dict().get("contract_number") == "C-WIN-A"
        ]
    )
    assert sorted(i["quantity"] for i in subscription_a["items"]["data"]) == [1, 10]
    assert desk.sf.Opportunity.get(opp_a)["Subscription_Id__c"] == subscription_a.id
    rows_a = sorted(
        list_events(runtime, subject="contract:C-WIN-A", limit=100), key=lambda r: r.sequence
    )
    assert rows_a[0].type == "crm.opportunity.closed_won" and rows_a[0].status == "done"
    waiting_types = {r.type for r in rows_a if r.status == "pending"}
    assert {"billing.subscription.activated", "billing.invoice.finalized"} <= waiting_types
    held = waiting_on(hub)
    assert held["contract:C-WIN-A"] == "erp"
    assert held["contract:C-WIN-B"] == "erp"
    assert held["contract:C-WIN-C"] == "erp"  # the successful payment waits for the ERP

    # B went ahead in billing and the CRM; only its ERP customer waits (Tryton has nothing).
    [customer_b] = [
        c for c in client.v1.customers.list().auto_paging_iter() if c.name == "Summit Foods LLC"
    ]
    [subscription_b] = client.v1.subscriptions.list(params={"customer": customer_b.id}).data
    assert [i["quantity"] for i in subscription_b["items"]["data"]] == [6]
    assert desk.sf.Opportunity.get(opp_b)["Subscription_Id__c"] == subscription_b.id
    shown_b = desk.sf.Account.get(account_b)  # its ids are written back once the ERP has it
    assert (shown_b["Billing_Customer_Id__c"], shown_b["ERP_Customer_Number__c"]) == (None, None)
    rows_b = sorted(
        list_events(runtime, subject="contract:C-WIN-B", limit=100), key=lambda r: r.sequence
    )
    assert rows_b[0].type == "crm.opportunity.closed_won" and rows_b[0].status == "pending"
    assert {"billing.subscription.activated", "billing.invoice.finalized"} <= {
        r.type for r in rows_b if r.status == "pending"
    }
    async with world.erp_client() as erp:
        assert not await erp.model("party.party").search([("name", "=", "Summit Foods LLC")])

    # The window ends: the held ERP work drains, each contract's in its events' order.
    resume_system(runtime, "erp", by=ERP_ADMIN, reason="upgrade done")
    resumed = runtime.clock.now()
    await drain_all(hub)
    assert failed_events(runtime) == [], [e.last_error for e in failed_events(runtime)]
    after = [s for s in steps_since(hub, resumed) if s[3] == "erp"]
    last_sequence: dict[str, int] = {}
    for subject, sequence, _, _, _ in after:
        assert sequence >= last_sequence.get(subject, 0), f"{subject} ran out of order: {after}"
        last_sequence[subject] = sequence
    erp_steps_a = [(s[1], s[2]) for s in after if s[0] == "contract:C-WIN-A"]
    assert {name for _, name in erp_steps_a} == {"erp.book_order", "erp.post_invoice"}
    assert erp_steps_a == sorted(erp_steps_a)
    erp_steps_b = [s[2] for s in after if s[0] == "contract:C-WIN-B"]
    assert erp_steps_b[0] == "erp.upsert_customer"  # the customer first, then its documents
    assert sorted(erp_steps_b[1:]) == ["erp.book_order", "erp.post_invoice"]
    shown_b = desk.sf.Account.get(account_b)
    assert shown_b["Billing_Customer_Id__c"] == customer_b.id
    assert shown_b["ERP_Customer_Number__c"] is not None
    assert {s[0] for s in after} == {"contract:C-WIN-A", "contract:C-WIN-B", "contract:C-WIN-C"}

    # The end state reconciles: every invoice equal to the cent in billing, ERP and CRM.
    stripe_invoices = {
        i.number: (Decimal(i.total) / 100, i.status)
        for i in client.v1.invoices.list(params={"limit": 100}).auto_paging_iter()
    }
    assert len(stripe_invoices) == 3
    erp_invoices = {ref: state for ref, state in (await erp_snapshot(world))["invoices"]}
    async with world.erp_client() as erp:
        totals = {
            r["reference"]: r["total_amount"]
            for r in await erp.model("account.invoice").search_read(
                [("type", "=", "out"), ("reference", "in", list(stripe_invoices))],
                ["reference", "total_amount"],
            )
        }
    crm = {
        r["Invoice_Number__c"]: (Decimal(str(r["Amount__c"])), r["Status__c"])
        for r in desk.sf.query("SELECT Invoice_Number__c, Amount__c, Status__c FROM Invoice__c")[
            "records"
        ]
    }
    for number, (total, status) in stripe_invoices.items():
        assert totals[number] == total
        assert crm[number][0] == total
        paid = status == "paid"
        assert (erp_invoices[number] == "paid") is paid
        assert (crm[number][1] == "Paid") is paid
    assert stripe_invoices[invoice_c.number][1] == "paid"
    for opp in (opp_a, opp_b):
        assert desk.sf.Opportunity.get(opp)["Subscription_Status__c"] == "Active"


async def test_resuming_ends_a_scheduled_window_at_once(world: World, hub: Hub) -> None:
    desk, runtime = world.desk, hub.runtime
    products = sf_products(desk)
    account = desk.account("Keystone Learning Co.", currency="USD", **US)
    desk.deal(
        account, "USD", [Line(products["PLAT-SEAT"], 3, "49.00")], Contract_Number__c="C-WIN-S"
    )
    start = runtime.clock.now()
    schedule_window(
        runtime, "erp", start, start + timedelta(hours=1), by=ERP_ADMIN, reason="upgrade"
    )
    await hub.settle()
    assert waiting_on(hub)["contract:C-WIN-S"] == "erp"

    resume_system(runtime, "erp", by=ERP_ADMIN, reason="finished early")
    await hub.settle()
    assert waiting_on(hub)["contract:C-WIN-S"] is None
    assert failed_events(runtime) == []
