"""Onboarding writes a customer to the ERP and billing once, and again only when the account
changed: a customer's second deal costs no master-data calls; an address change reaches the ERP."""

from __future__ import annotations

from sqlalchemy import select

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from quote2cash.engine.queries import failed_events
from quote2cash.flows.subjects import contract_subject
from quote2cash.store.schema import events, steps

MASTER_DATA_STEPS = {"erp.upsert_customer", "billing.upsert_customer", "crm.publish_account_ids"}


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
