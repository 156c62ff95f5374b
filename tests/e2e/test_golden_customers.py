"""The golden customer record in onboarding, against the emulators and a real Tryton: two CRM
accounts of one company become one ERP and one billing customer (the second flagged in the CRM
for sales operations); a doubtful account parks its deal until a data steward decides; a merge
done in the CRM moves the loser's cross-references to the survivor's customer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from contract.crm.salesforce_harness import Line
from e2e.conftest import CONFIG, Hub, World, sf_products
from e2e.test_erp_window import empty_crm_and_billing
from quote2cash.engine.queries import failed_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.customers import decide_steward_task
from quote2cash.flows.deps import FlowDeps
from quote2cash.identity import Operator
from quote2cash.masterdata import GoldenCustomers
from quote2cash.masterdata.xref import Kind
from quote2cash.sandbox.seed import seed_salesforce
from quote2cash.store.schema import EVENTS_WITH_STATE, audit_log, event_state, events

STEWARD = Operator("steward", frozenset({"operator"}), via="token")
AUSTIN = {
    "BillingStreet": "12 Congress Ave",
    "BillingCity": "Austin",
    "BillingPostalCode": "73301",
    "BillingState": "TX",
    "BillingCountryCode": "US",
    "BillingCountry": "United States",
}
DALLAS = {
    **AUSTIN,
    "BillingStreet": "900 Elm St",
    "BillingCity": "Dallas",
    "BillingPostalCode": "75201",
}


@pytest.fixture
async def hub(world: World, tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub of its own over an emptied CRM and billing (the ERP keeps earlier parties)."""
    empty_crm_and_billing(world)
    await seed_salesforce(world.sf_url, world.sf_ca)
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", sqlite_synchronous="NORMAL")
    try:
        systems = world.systems()
        async with systems:
            deps = FlowDeps.build(runtime, systems, CONFIG)
            assert deps.golden is not None
            yield Hub(runtime, deps, Worker(runtime, build_registry(deps)), systems)
    finally:
        runtime.close()


def _deal(world: World, account: str, contract: str) -> str:
    return world.desk.deal(
        account,
        "USD",
        [Line(sf_products(world.desk)["PLAT-SEAT"], 2, "49.00")],
        name=contract,
        Contract_Number__c=contract,
    )


def _golden(hub: Hub) -> GoldenCustomers:
    assert hub.deps.golden is not None
    return hub.deps.golden


def _no_failures(hub: Hub) -> None:
    failures = failed_events(hub.runtime)
    assert failures == [], [e.last_error for e in failures]


def _subscription_customer(world: World, opportunity: str) -> str:
    sub_id = world.desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"]
    assert sub_id, f"opportunity {opportunity} has no subscription"
    return str(world.stripe().v1.subscriptions.retrieve(sub_id).customer)


async def _parties(world: World, name: str) -> list[dict[str, Any]]:
    async with world.erp_client() as erp:
        return list(await erp.model("party.party").search_read([("name", "=", name)], ["name"]))


async def test_two_accounts_of_one_company_are_one_erp_and_one_billing_customer(
    world: World, hub: Hub
) -> None:
    first = world.desk.account("Quillfeather Analytics Inc", currency="USD", **AUSTIN)
    second = world.desk.account("Quillfeather Analytics", currency="USD", **AUSTIN)
    first_deal = _deal(world, first, "C-QF-0001")
    await hub.settle()
    second_deal = _deal(world, second, "C-QF-0002")
    await hub.settle()
    _no_failures(hub)

    xref = hub.deps.xref
    gid = xref.global_id_for(Kind.CUSTOMER, "crm", first)
    assert gid is not None and xref.global_id_for(Kind.CUSTOMER, "crm", second) == gid
    ids = xref.system_ids(gid)
    assert ids["crm"] == (first, second)
    assert len(ids["erp"]) == 1 and len(ids["billing"]) == 1
    # both contracts bill the one billing customer, and the ERP has one party for them
    assert _subscription_customer(world, first_deal) == ids["billing"][0]
    assert _subscription_customer(world, second_deal) == ids["billing"][0]
    assert len(await _parties(world, "Quillfeather Analytics Inc")) == 1
    assert await _parties(world, "Quillfeather Analytics") == []
    # the CRM: the ids stay on the first account, the second is marked for sales operations
    shown = world.desk.sf.Account.get(first)
    flagged = world.desk.sf.Account.get(second)
    assert shown["Hub_Global_Id__c"] == gid and shown["Q2C_Duplicate_Of__c"] is None
    assert flagged["Hub_Global_Id__c"] is None and flagged["ERP_Customer_Number__c"] is None
    assert flagged["Q2C_Duplicate_Of__c"] == first
    assert flagged["Q2C_Merge_Status__c"] == "Pending Merge"


async def test_a_doubtful_account_parks_its_deal_until_a_steward_decides(
    world: World, hub: Hub
) -> None:
    known = world.desk.account("Marrowgate Logistics Inc", currency="USD", **AUSTIN)
    _deal(world, known, "C-MG-0001")
    await hub.settle()
    # the same name in another city (postal code): a branch, or another company of that name?
    doubtful = world.desk.account("Marrowgate Logistics", currency="USD", **DALLAS)
    parked_deal = _deal(world, doubtful, "C-MG-0002")
    other = world.desk.account("Unrelated Sundries LLC", currency="USD", **DALLAS)
    other_deal = _deal(world, other, "C-US-0001")
    await hub.settle()
    _no_failures(hub)

    golden = _golden(hub)
    [task] = golden.tasks()
    known_gid = hub.deps.xref.global_id_for(Kind.CUSTOMER, "crm", known)
    assert (task.system, task.local_id) == ("crm", doubtful)
    assert task.options == (known_gid,)
    assert task.reviews[0].evidence["outcome"] == "review"
    # parked, not failed: nothing reached billing or the ERP, other deals went on
    assert world.desk.sf.Opportunity.get(parked_deal)["Subscription_Id__c"] is None
    assert world.desk.sf.Opportunity.get(other_deal)["Subscription_Id__c"]
    with hub.runtime.engine.connect() as conn:
        statuses = dict(
            conn.execute(
                select(events.c.subject, event_state.c.status)
                .select_from(EVENTS_WITH_STATE)
                .where(events.c.type == "crm.opportunity.closed_won")
            ).all()
        )
    assert statuses["contract:C-MG-0002"] == "parked", statuses

    assert known_gid is not None
    decided = decide_steward_task(
        hub.runtime, golden, "crm", doubtful, same_as=known_gid, by=STEWARD, note="same company"
    )
    assert decided.decision.global_id == known_gid
    await hub.settle()
    _no_failures(hub)
    assert golden.tasks() == []
    assert hub.deps.xref.global_id_for(Kind.CUSTOMER, "crm", doubtful) == known_gid
    ids = hub.deps.xref.system_ids(known_gid)
    assert len(ids["billing"]) == 1 and len(ids["erp"]) == 1
    assert _subscription_customer(world, parked_deal) == ids["billing"][0]
    assert world.desk.sf.Account.get(doubtful)["Q2C_Duplicate_Of__c"] == known
    with hub.runtime.engine.connect() as conn:
        actions = [
            (r.action, r.actor)
            for r in conn.execute(
                select(audit_log.c.action, audit_log.c.actor).where(
                    audit_log.c.action.like("masterdata.steward_task.%")
                )
            )
        ]
    assert actions == [
        ("masterdata.steward_task.opened", "flows"),
        ("masterdata.steward_task.decided", "steward"),
    ]


async def test_a_new_decision_makes_a_customer_of_its_own(world: World, hub: Hub) -> None:
    known = world.desk.account("Brightwater Assay Inc", currency="USD", **AUSTIN)
    _deal(world, known, "C-BA-0001")
    await hub.settle()
    doubtful = world.desk.account("Brightwater Assay", currency="USD", **DALLAS)
    parked_deal = _deal(world, doubtful, "C-BA-0002")
    await hub.settle()
    assert world.desk.sf.Opportunity.get(parked_deal)["Subscription_Id__c"] is None

    decide_steward_task(hub.runtime, _golden(hub), "crm", doubtful, same_as=None, by=STEWARD)
    await hub.settle()
    _no_failures(hub)
    xref = hub.deps.xref
    own = xref.global_id_for(Kind.CUSTOMER, "crm", doubtful)
    assert own is not None and own != xref.global_id_for(Kind.CUSTOMER, "crm", known)
    assert _subscription_customer(world, parked_deal) == xref.local_id(own, "billing")
    assert world.desk.sf.Account.get(doubtful)["Hub_Global_Id__c"] == own


async def test_a_crm_merge_moves_the_losers_cross_references_to_the_survivor(
    world: World, hub: Hub
) -> None:
    survivor = world.desk.account("Pinecrest Dental Group Inc", currency="USD", **AUSTIN)
    loser = world.desk.account("Pinecrest Dental Partners LLC", currency="USD", **DALLAS)
    _deal(world, survivor, "C-PD-0001")
    loser_deal = _deal(world, loser, "C-PD-0002")
    await hub.settle()
    _no_failures(hub)
    xref = hub.deps.xref
    kept = xref.global_id_for(Kind.CUSTOMER, "crm", survivor)
    gone = xref.global_id_for(Kind.CUSTOMER, "crm", loser)
    assert kept and gone and kept != gone  # two customers until sales operations merge them
    gone_billing = xref.local_id(gone, "billing")

    world.desk.merge_accounts(survivor, loser)
    await hub.settle()
    _no_failures(hub)
    assert xref.resolve(gone) == kept
    ids = xref.system_ids(kept)
    assert ids["crm"] == (survivor,)
    assert gone_billing in ids["billing"] and len(ids["erp"]) == 2
    assert xref.global_id_for(Kind.CUSTOMER, "crm", loser) is None
    assert [r.local_id for r in xref.history_of(Kind.CUSTOMER, "crm", loser)] == [loser, loser]
    # the contract the loser signed is the survivor's in the CRM now
    assert world.desk.sf.Opportunity.get(loser_deal)["AccountId"] == survivor
    with hub.runtime.engine.connect() as conn:
        merged = conn.execute(
            select(audit_log.c.details).where(
                audit_log.c.action == "masterdata.customer.account_merged"
            )
        ).scalar_one()
    assert loser in str(merged) and survivor in str(merged)
