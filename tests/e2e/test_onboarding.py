"""Onboarding writes a customer to the ERP and billing once, and again only when the account
changed: a customer's second deal costs no master-data calls; an address change reaches the ERP.
Finance's ``erp_first`` policy holds a deal out of billing until the ERP has its customer."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from contract.crm.salesforce_harness import Line
from e2e.conftest import CONFIG, Hub, World, sf_products
from e2e.test_erp_window import empty_crm_and_billing
from quote2cash.engine.control import pause_system, resume_system
from quote2cash.engine.queries import failed_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.subjects import contract_subject
from quote2cash.identity import Operator
from quote2cash.sandbox.seed import seed_salesforce
from quote2cash.store.schema import events, steps

MASTER_DATA_STEPS = {"erp.upsert_customer", "billing.upsert_customer", "crm.publish_account_ids"}

ERP_ADMIN = Operator("erp-admin", frozenset({"operator"}), via="token")
"""The ERP team's operator, as their token authenticates them."""


def _steps_of_deal(hub: Hub, contract: str) -> set[str]:
    with hub.runtime.engine.connect() as conn:
        return set(
            conn.execute(
                select(steps.c.name)
                .join(events, events.c.pos == steps.c.event_pos)
                .where(
                    events.c.subject == contract_subject(contract),
                    events.c.type == "crm.opportunity.closed_won",
                )
            ).scalars()
        )


async def _close(world: World, hub: Hub, account: str, contract: str) -> set[str]:
    world.desk.deal(
        account,
        "USD",
        [Line(sf_products(world.desk)["PLAT-SEAT"], 2, "49.00")],
        name=contract,
        Contract_Number__c=contract,
    )
    await hub.settle()
    failures = failed_events(hub.runtime)
    assert failures == [], [e.last_error for e in failures]
    return _steps_of_deal(hub, contract)


async def test_unchanged_customer_is_not_written_again(world: World, hub: Hub) -> None:
    account = world.desk.account(
        "Once Only Corp",
        currency="USD",
        BillingStreet="1 First St",
        BillingCity="Austin",
        BillingPostalCode="73301",
        BillingState="TX",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    first = await _close(world, hub, account, "C-OO-0001")
    assert first >= MASTER_DATA_STEPS

    second = await _close(world, hub, account, "C-OO-0002")
    assert not MASTER_DATA_STEPS & second, second
    assert "billing.create_subscription" in second
    client = world.stripe()
    customers = [
        c for c in client.v1.customers.list().auto_paging_iter() if c.name == "Once Only Corp"
    ]
    assert len(customers) == 1
    subs = client.v1.subscriptions.list(params={"customer": customers[0].id}).data
    assert {s.metadata["contract_number"] for s in subs} == {"C-OO-0001", "C-OO-0002"}

    # The rep moves the customer: the next deal writes the new address to the ERP.
    world.desk.sf.Account.update(account, {"BillingStreet": "2 Second Ave"})
    third = await _close(world, hub, account, "C-OO-0003")
    assert {"erp.upsert_customer", "billing.upsert_customer"} <= third
    assert "crm.publish_account_ids" not in third  # the account already shows the same ids
    async with world.erp_client() as erp:
        parties = await erp.model("party.party").search_read(
            [("name", "=", "Once Only Corp")], ["addresses"]
        )
        assert len(parties) == 1
        streets = await erp.model("party.address").read(parties[0]["addresses"], ["street"])
    assert any("2 Second Ave" in (a["street"] or "") for a in streets), streets


async def test_erp_first_policy_writes_nothing_to_billing_while_the_erp_is_paused(
    world: World, tmp_path: Path
) -> None:
    """Finance requires the ERP customer first (``onboarding: {erp_first: true}``): a deal closed
    while the ERP is paused reaches neither billing nor the CRM until the ERP has the customer."""
    empty_crm_and_billing(world)  # a hub of its own: the other test's deals are not its business
    await seed_salesforce(world.sf_url, world.sf_ca)
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    (config / "onboarding.yaml").write_text("version: 1\nonboarding: {erp_first: true}\n")
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", sqlite_synchronous="NORMAL")
    try:
        systems = world.systems()
        async with systems:
            deps = FlowDeps.build(runtime, systems, config)
            assert deps.onboarding.erp_first
            hub = Hub(runtime, deps, Worker(runtime, build_registry(deps)), systems)
            pause_system(runtime, "erp", by=ERP_ADMIN, reason="credit check system down")
            account = world.desk.account(
                "Credit First Corp",
                currency="USD",
                BillingStreet="3 Third St",
                BillingCity="Austin",
                BillingPostalCode="73301",
                BillingState="TX",
                BillingCountryCode="US",
                BillingCountry="United States",
            )
            opportunity = world.desk.deal(
                account,
                "USD",
                [Line(sf_products(world.desk)["PLAT-SEAT"], 2, "49.00")],
                Contract_Number__c="C-EF-0001",
            )
            await hub.settle()
            client = world.stripe()
            named = [
                c
                for c in client.v1.customers.list().auto_paging_iter()
                if c.name == "Credit First Corp"
            ]
            assert named == []
            assert world.desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"] is None
            assert _steps_of_deal(hub, "C-EF-0001") == {
                "crm.get_deal",
                "crm.list_products",
                "crm.get_account",
                "customer.resolved",
                "deal.resolved",
            }

            resume_system(runtime, "erp", by=ERP_ADMIN, reason="back")
            await hub.settle()
            failures = failed_events(runtime)
            assert failures == [], [e.last_error for e in failures]
            with runtime.engine.connect() as conn:
                order = list(
                    conn.execute(
                        select(steps.c.name)
                        .join(events, events.c.pos == steps.c.event_pos)
                        .where(events.c.type == "crm.opportunity.closed_won")
                        .order_by(steps.c.completed_at)
                    ).scalars()
                )
            assert order.index("erp.upsert_customer") < order.index("billing.upsert_customer")
            [customer] = [
                c
                for c in client.v1.customers.list().auto_paging_iter()
                if c.name == "Credit First Corp"
            ]
            assert client.v1.subscriptions.list(params={"customer": customer.id}).data
    finally:
        runtime.close()
