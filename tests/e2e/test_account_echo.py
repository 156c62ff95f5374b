"""The hub's own write-back to a CRM account (its ids, the legal entity, the ERP's values) comes
back through the CRM's account poll as an account change: it is recognised and costs no ERP or
billing call, while a person's edit, also one made between the write-back and the poll, still
flows (CRM-owned fields) or is warned about and undone (ERP-owned fields).

One scenario in one hub: every hub polls the whole CRM, and the sandbox ERP is shared by the
module (a second hub would take the first one's deals again).
"""

from __future__ import annotations

import aiohttp

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from e2e.test_ownership import EDITED_VAT, ERP_VAT, settle_with_accounts
from quote2cash.engine.context import step_system
from quote2cash.engine.exceptions import list_exceptions
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.engine.trail import steps_of
from quote2cash.flows.accounts import ACCOUNT_CHANGED, account_subject
from quote2cash.flows.intake import poll_accounts


def system_calls_of_account_changes(hub: Hub, account: str) -> list[str]:
    """The ERP and billing steps the account's change events took, from the hub's log."""
    changes = list_events(hub.runtime, subject=account_subject(account), limit=500)
    assert all(c.type == ACCOUNT_CHANGED for c in changes), changes
    steps = steps_of(hub.runtime, [c.pos for c in changes])
    return [name for name, _result in steps if step_system(name) in {"erp", "billing"}]


async def stripe_requests(world: World) -> int:
    """The API requests the Stripe emulator has answered (its own count)."""
    url = f"{world.stripe_url}/_emulator/usage"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return int((await response.json())["requests"])


def german_account(world: World, name: str, **fields: str) -> str:
    return world.desk.account(
        name,
        currency="EUR",
        BillingStreet="Hohe Straße 1",
        BillingCity="Köln",
        BillingPostalCode="50667",
        BillingCountryCode="DE",
        BillingCountry="Germany",
        **fields,
    )


def close_deal(world: World, account: str, contract: str) -> None:
    products = sf_products(world.desk)
    lines = [Line(products["PLAT-SEAT"], 2, "45.00")]
    world.desk.deal(account, "EUR", lines, name=contract, Contract_Number__c=contract)


def assert_nothing_failed(hub: Hub) -> None:
    failed = [e for e in failed_events(hub.runtime) if e.category != "ownership"]
    assert failed == [], [e.last_error for e in failed]


async def test_the_hubs_write_back_is_not_synced_again_and_a_persons_edit_is(
    world: World, hub: Hub
) -> None:
    desk = world.desk
    echo = german_account(world, "Echo Werke GmbH", VAT_Number__c=ERP_VAT)
    close_deal(world, echo, "C-ECHO-1")
    await hub.settle()
    # The write-back is recorded on the account ...
    onboarded = desk.sf.Account.get(echo)
    assert onboarded["ERP_Customer_Number__c"] and onboarded["Billing_Customer_Id__c"]
    assert onboarded["Hub_Global_Id__c"] and onboarded["Legal_Entity__c"] == "DE"
    # ... the CRM poll sees it as an account change, which calls neither ERP nor billing.
    assert hub.systems.crm is not None
    before = await stripe_requests(world)
    assert await poll_accounts(hub.runtime, hub.systems.crm) >= 1
    await hub.worker.drain()
    assert await stripe_requests(world) == before
    changes = list_events(hub.runtime, subject=account_subject(echo))
    assert changes and {c.status for c in changes} == {"done"}, changes
    assert system_calls_of_account_changes(hub, echo) == []
    assert_nothing_failed(hub)

    # A later edit of an ERP-owned field is still found: warned about and undone; the undo
    # comes back through the poll too, and is not synced again.
    desk.sf.Account.update(echo, {"VAT_Number__c": EDITED_VAT})
    await settle_with_accounts(hub)
    assert system_calls_of_account_changes(hub, echo) == ["erp.get_customer"]
    assert desk.sf.Account.get(echo)["VAT_Number__c"] == ERP_VAT
    warnings = [e for e in list_exceptions(hub.runtime) if e.category == "ownership"]
    assert len(warnings) == 1 and EDITED_VAT in (warnings[0].reason or ""), warnings
    await settle_with_accounts(hub)
    assert system_calls_of_account_changes(hub, echo) == ["erp.get_customer"]

    # A person renames another account after the hub's write-back, before the hub polls
    # accounts: the edit reaches the ERP and billing.
    between = german_account(world, "Zwischen Werke GmbH", VAT_Number__c="DE129273398")
    close_deal(world, between, "C-ECHO-2")
    await hub.settle()
    written = desk.sf.Account.get(between)
    assert written["ERP_Customer_Number__c"]
    desk.sales_rep().Account.update(between, {"Name": "Zwischen Werke AG", "Phone": "+49 221 1"})
    await settle_with_accounts(hub)
    assert_nothing_failed(hub)
    calls = system_calls_of_account_changes(hub, between)
    assert "erp.upsert_customer" in calls and "billing.upsert_customer" in calls, calls
    async with world.erp_client() as erp:
        renamed = await erp.model("party.party").search([("name", "=", "Zwischen Werke AG")])
        old = await erp.model("party.party").search([("name", "=", "Zwischen Werke GmbH")])
    assert len(renamed) == 1 and not old
    customer = world.stripe().v1.customers.retrieve(written["Billing_Customer_Id__c"])
    assert (customer.name, customer.phone) == ("Zwischen Werke AG", "+49 221 1")
