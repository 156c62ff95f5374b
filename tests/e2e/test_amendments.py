"""Mid-term seat changes requested in the CRM, applied in contract order whatever the delivery
order: billing quantity with proration, ERP delta bookings and invoices to the cent, CRM Applied.

The registry used here is the flows' ``FLOWS`` plus the two credit-aware invoice handlers of
``flows.lifecycle`` (a seat reduction invoiced at once is a credit); see the lead's note in the
report. Everything is checked by reading each system directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from contract.crm.salesforce_harness import Line, SalesforceDesk
from e2e.conftest import CONFIG, World, sf_products
from quote2cash.connectors.registry import Systems
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows import FLOWS
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import poll_amendments, poll_billing, poll_crm
from quote2cash.flows.lifecycle import sync_invoice_or_credit, sync_payment_or_settled
from quote2cash.readmodels.invoice_status import InvoiceStatusProjection
from quote2cash.store.schema import intake_cursors
from quote2cash.store.upsert import upsert_row
from support.invoice_reads import assert_read_model_matches_log

Flow = Callable[[HandlerContext, Event, FlowDeps], Awaitable[None]]
CREDIT_AWARE: dict[str, Flow] = {
    "billing.invoice.finalized": sync_invoice_or_credit,
    "billing.payment.succeeded": sync_payment_or_settled,
}


def lifecycle_registry(deps: FlowDeps) -> Registry:
    """``FLOWS`` with credit invoices handled (what the lead is asked to wire in)."""
    registry = Registry()
    for event_type, flow in {**FLOWS, **CREDIT_AWARE}.items():
        registry.add(event_type, _bound(flow, deps))

    async def recorded_only(ctx: HandlerContext, event: Event) -> None:
        """Billing events no process acts on are kept in order and marked done."""

    registry.add("billing.*", recorded_only)
    registry.add_projection(InvoiceStatusProjection())  # as build_registry does
    return registry


def _bound(flow: Flow, deps: FlowDeps) -> Callable[[HandlerContext, Event], Awaitable[None]]:
    async def handler(ctx: HandlerContext, event: Event) -> None:
        await flow(ctx, event, deps)

    return handler


@dataclass
class LifecycleHub:
    runtime: Runtime
    deps: FlowDeps
    worker: Worker
    systems: Systems

    async def poll_crm(self) -> int:
        assert self.systems.crm is not None
        return await poll_crm(self.runtime, self.systems.crm)

    async def poll_amendments(self) -> int:
        assert self.systems.crm is not None
        return await poll_amendments(self.runtime, self.systems.crm, self.deps.xref)

    async def poll_billing(self) -> int:
        assert self.systems.billing is not None
        return await poll_billing(self.runtime, self.systems.billing)

    async def settle(self, *, deadline_seconds: float = 20.0) -> None:
        """Poll the three intakes and drain until nothing is new and nothing waits to retry."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            new = await self.poll_crm() + await self.poll_amendments() + await self.poll_billing()
            report = await self.worker.drain()
            waiting = [e for e in list_events(self.runtime, limit=1000) if e.status == "pending"]
            if new == 0 and report.processed == 0 and not waiting:
                return
            if report.processed == 0 and new == 0:
                await asyncio.sleep(0.2)  # a retry is scheduled: poll again until it is due
        raise AssertionError("the hub did not settle before the deadline")


@asynccontextmanager
async def open_lifecycle_hub(world: World, folder: Path) -> AsyncIterator[LifecycleHub]:
    """A hub of its own on the shared world, hearing only what happens from now on."""
    runtime = Runtime.open(f"sqlite:///{folder / 'hub.sqlite'}", sqlite_synchronous="NORMAL")
    systems = world.systems()
    try:
        async with systems:
            deps = FlowDeps.build(runtime, systems, CONFIG)
            worker = Worker(runtime, lifecycle_registry(deps), commit_interval=0.05)
            await start_intake_now(runtime, world)
            yield LifecycleHub(runtime, deps, worker, systems)
            assert_read_model_matches_log(runtime, deps.xref)
    finally:
        runtime.close()


@pytest.fixture
async def lifecycle_hub(world: World, tmp_path: Path) -> AsyncIterator[LifecycleHub]:
    async with open_lifecycle_hub(world, tmp_path) as hub:
        yield hub


async def start_intake_now(runtime: Runtime, world: World) -> None:
    """A fresh hub on a shared world hears only what happens from now on (earlier tests' deals
    and billing events belong to their own hubs). The CRM filters on whole seconds (``>=``), so
    the cursor is the next whole second, and the test starts once the clock has passed it."""
    newest = world.stripe().v1.events.list(params={"limit": 1}).data
    boundary = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    cursors = {"crm": boundary.isoformat(), "crm.amendments": boundary.isoformat()}
    if newest:
        cursors["billing"] = newest[0].id
    with runtime.engine.begin() as conn:
        for source, cursor in cursors.items():
            upsert_row(
                conn,
                intake_cursors,
                {"source": source, "cursor": cursor, "updated_at": runtime.clock.now()},
                key="source",
            )
    await asyncio.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds()))


def crm_subscription_for(desk: SalesforceDesk, opportunity_id: str) -> str:
    """The CRM Subscription__c the hub created for the deal, linked to its opportunity."""
    opp = desk.sf.Opportunity.get(opportunity_id)
    assert opp["Subscription_Id__c"], "the hub did not write the subscription id back"
    rows = desk.sf.query(
        "SELECT Id, Opportunity__c, Account__c FROM Subscription__c "
        f"WHERE Billing_Subscription_Id__c = '{opp['Subscription_Id__c']}'"
    )["records"]
    assert len(rows) == 1, "the hub did not create exactly one CRM subscription"
    assert rows[0]["Opportunity__c"] == opportunity_id
    assert rows[0]["Account__c"] == opp["AccountId"]
    return str(rows[0]["Id"])


def request(
    desk: SalesforceDesk,
    subscription: str,
    number: int,
    previous: int,
    new: int,
    *,
    proration: str = "always_invoice",
    effective: datetime | None = None,
) -> str:
    return desk.request_seat_change(
        subscription,
        sf_products(desk)["PLAT-SEAT"],
        new,
        (effective or datetime.now(UTC)).date(),
        Amendment_Number__c=number,
        Previous_Quantity__c=previous,
        Proration__c=proration,
    )


async def erp_documents(world: World, party_name: str) -> dict[str, list[dict[str, Any]]]:
    async with world.erp_client() as erp:
        [party] = await erp.model("party.party").search_read([("name", "=", party_name)], ["id"])
        sales = await erp.model("sale.sale").search_read(
            [("party", "=", party["id"])], ["reference", "total_amount", "state"]
        )
        invoices = await erp.model("account.invoice").search_read(
            [("party", "=", party["id"]), ("type", "=", "out")],
            ["reference", "total_amount", "state", "amount_to_pay"],
        )
    return {"sales": sales, "invoices": invoices}


def stripe_invoices(world: World, subscription_id: str) -> list[Any]:
    client = world.stripe()
    return sorted(
        client.v1.invoices.list(params={"subscription": subscription_id}).data,
        key=lambda i: i.number,
    )


async def won_deal(
    world: World,
    hub: LifecycleHub,
    name: str,
    contract: str,
    seats: int = 5,
    *,
    account: str | None = None,
) -> tuple[str, str, str]:
    """A closed deal the hub has turned into a billing subscription (not yet activated in the
    hub); returns (opportunity, billing subscription, CRM Subscription__c)."""
    desk = world.desk
    account = account or desk.account(
        name,
        currency="EUR",
        BillingStreet="Hauptstr. 1",
        BillingCity="Köln",
        BillingPostalCode="50667",
        BillingCountryCode="DE",
        BillingCountry="Germany",
    )
    opportunity = desk.deal(
        account,
        "EUR",
        [Line(sf_products(desk)["PLAT-SEAT"], seats, "45.00")],
        name=name,
        Contract_Number__c=contract,
    )
    await hub.poll_crm()
    await hub.worker.drain()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    subscription = crm_subscription_for(desk, opportunity)
    billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    return opportunity, billing_id, subscription


async def test_amendments_in_reverse_order_and_before_activation(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk = lifecycle_hub, world.desk
    name = "Reverse Order Amendments GmbH"
    _, billing_id, crm_sub = await won_deal(world, hub, name, "C-AM-0001")

    # The rep files amendment 2 before amendment 1; the hub hears both before billing's activation.
    second = request(desk, crm_sub, 2, previous=7, new=6)
    first = request(desk, crm_sub, 1, previous=5, new=7)
    assert await hub.poll_amendments() == 2
    # The requests are handled before billing's activation is even heard of: they wait.
    await hub.worker.drain()
    assert await hub.poll_billing() > 0
    rows = list_events(hub.runtime, subject="contract:C-AM-0001", limit=100)
    logged = [r.type for r in sorted(rows, key=lambda r: r.sequence)]
    assert logged.index("crm.amendment.requested") < logged.index("billing.subscription.activated")
    # One pass, no backoff to sit out: the activation and its ERP booking go ahead at once,
    # then 1 and 2 are applied in order; no request was copied or retried.
    await hub.worker.drain()
    rows = list_events(hub.runtime, subject="contract:C-AM-0001", limit=100)
    [activation] = [r for r in rows if r.type == "billing.subscription.activated"]
    assert activation.status == "done"
    assert {s["reference"] for s in (await erp_documents(world, name))["sales"]} >= {"C-AM-0001"}
    requests = [r for r in rows if r.type == "crm.amendment.requested"]
    assert [(r.status, r.attempts) for r in requests] == [("done", 0), ("done", 0)]
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]

    # Billing: 6 seats; a proration invoice for +2 seats and a credit for -1 seat.
    client = world.stripe()
    sub = client.v1.subscriptions.retrieve(billing_id)
    assert sub["items"]["data"][0]["quantity"] == 6
    bills = stripe_invoices(world, billing_id)
    assert bills[0].total == 26775  # 5 x 45.00 plus 19 % German VAT
    assert len(bills) == 3 and bills[1].total > 0 and bills[2].total < 0
    assert 0 < bills[1].total <= 10710 and -5355 <= bills[2].total < 0

    # ERP: the booking and one delta sale per amendment; invoices and credit note to the cent.
    erp = await erp_documents(world, name)
    sales = {s["reference"]: s["total_amount"] for s in erp["sales"]}
    assert sales == {
        "C-AM-0001": Decimal("225.00"),
        "C-AM-0001/A1": Decimal("90.00"),
        "C-AM-0001/A2": Decimal("-45.00"),
    }
    totals = sorted(i["total_amount"] for i in erp["invoices"])
    assert totals == sorted(Decimal(i.total) / 100 for i in bills)
    assert all(i["state"] in ("posted", "paid") for i in erp["invoices"])

    # CRM: both requests Applied, the subscription at 6 seats and active.
    for request_id in (first, second):
        assert desk.sf.Amendment_Request__c.get(request_id)["Status__c"] == "Applied"
    crm = desk.sf.Subscription__c.get(crm_sub)
    assert crm["Quantity__c"] == 6 and crm["Status__c"] == "Active"
    subs = desk.sf.query(
        f"SELECT Id FROM Subscription__c WHERE Billing_Subscription_Id__c = '{billing_id}'"
    )["records"]
    assert len(subs) == 1

    rows = list_events(hub.runtime, subject="contract:C-AM-0001", limit=200)
    assert len({r.correlation_id for r in rows}) == 1


async def test_amendment_in_order_with_prorations_left_for_the_next_invoice(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk = lifecycle_hub, world.desk
    name = "In Order Amendments GmbH"
    _, billing_id, crm_sub = await won_deal(world, hub, name, "C-AM-0002")
    await hub.settle()
    request(desk, crm_sub, 1, previous=5, new=8, proration="create_prorations")
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    client = world.stripe()
    assert client.v1.subscriptions.retrieve(billing_id)["items"]["data"][0]["quantity"] == 8
    assert len(stripe_invoices(world, billing_id)) == 1  # prorations wait for the next cycle
    erp = await erp_documents(world, name)
    assert {s["reference"]: s["total_amount"] for s in erp["sales"]} == {
        "C-AM-0002": Decimal("225.00"),
        "C-AM-0002/A1": Decimal("135.00"),
    }
    assert desk.sf.Subscription__c.get(crm_sub)["Quantity__c"] == 8


async def test_amendment_from_a_stale_quantity_is_refused_and_marked_failed(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk = lifecycle_hub, world.desk
    _, billing_id, crm_sub = await won_deal(world, hub, "Stale Quote GmbH", "C-AM-0003")
    await hub.settle()
    stale = request(desk, crm_sub, 1, previous=9, new=4)
    await hub.poll_amendments()
    await hub.worker.drain()
    [failed] = failed_events(hub.runtime)
    assert failed.type == "crm.amendment.requested" and failed.category == "conflict"
    assert failed.last_error is not None and "expected quantity 9" in failed.last_error
    assert desk.sf.Amendment_Request__c.get(stale)["Status__c"] == "Failed"
    quantity = world.stripe().v1.subscriptions.retrieve(billing_id)["items"]["data"][0]["quantity"]
    assert quantity == 5
    erp = await erp_documents(world, "Stale Quote GmbH")
    assert [s["reference"] for s in erp["sales"]] == ["C-AM-0003"]
