"""Cancellation (now with a credit note, or at period end) and renewal at term end, carried to
billing, the ERP and the CRM; checked by reading each system directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from e2e.conftest import World
from e2e.test_amendments import (
    LifecycleHub,
    erp_documents,
    open_lifecycle_hub,
    request,
    stripe_invoices,
    won_deal,
)
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.flows.status import get_invoice_status
from quote2cash.masterdata.xref import Kind

GROSS = Decimal("267.75")
"""5 seats at 45.00 (225.00) plus 19 % German VAT (42.75)."""


@pytest.fixture
async def lifecycle_hub(world: World, tmp_path: Path) -> AsyncIterator[LifecycleHub]:
    async with open_lifecycle_hub(world, tmp_path) as hub:
        yield hub


def assert_no_failures(hub: LifecycleHub) -> None:
    failed = failed_events(hub.runtime)
    assert failed == [], [e.last_error for e in failed]


async def test_immediate_cancellation_credits_the_unused_time_everywhere(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk = lifecycle_hub, world.desk
    name = "Cancel Now GmbH"
    opportunity, billing_id, crm_sub = await won_deal(world, hub, name, "C-LC-0001")
    await hub.settle()
    cancel = request(desk, crm_sub, 1, previous=5, new=0)
    await hub.settle()
    assert_no_failures(hub)

    # Billing: canceled now; a final invoice credits the unused time.
    client = world.stripe()
    assert client.v1.subscriptions.retrieve(billing_id).status == "canceled"
    bills = stripe_invoices(world, billing_id)
    assert [b.total > 0 for b in bills] == [True, False]
    credit = bills[1]
    assert -26775 <= credit.total < 0  # at most the 225.00 plus 19 % VAT

    # ERP: the first invoice posted, then a credit note equal to the cent. Billing moved the
    # credit to the customer's balance and the first invoice still owes all of it; the ERP holds
    # the same: the credit note is the customer's open credit, the invoice owes 225.00.
    erp = await erp_documents(world, name)
    by_total = {i["total_amount"]: i for i in erp["invoices"]}
    assert sorted(by_total) == [Decimal(credit.total) / 100, GROSS]
    original = by_total[GROSS]
    assert original["amount_to_pay"] == Decimal(bills[0].amount_remaining) / 100
    assert original["amount_to_pay"] == GROSS
    note = by_total[Decimal(credit.total) / 100]
    assert (note["state"], note["amount_to_pay"]) == ("posted", Decimal(credit.total) / 100)
    assert client.v1.customers.retrieve(str(credit.customer)).balance == credit.total

    # CRM: request applied, subscription and opportunity canceled, the credit visible.
    assert desk.sf.Amendment_Request__c.get(cancel)["Status__c"] == "Applied"
    assert desk.sf.Subscription__c.get(crm_sub)["Status__c"] == "Canceled"
    assert desk.sf.Opportunity.get(opportunity)["Subscription_Status__c"] == "Canceled"
    [crm_credit] = desk.invoices(credit.number)
    assert Decimal(str(crm_credit["Amount__c"])) == Decimal(credit.total) / 100
    assert crm_credit["Status__c"] == "Paid"

    # The hub knows the credit note under the billing invoice's global id.
    gid = hub.deps.xref.global_id_for(Kind.INVOICE, "billing", credit.id)
    assert gid is not None and hub.deps.xref.local_id(gid, "erp") is not None
    view = get_invoice_status(hub.runtime, hub.deps.xref, credit.number)
    assert view.is_credit and view.status == "paid" and view.posted_in_erp
    assert view.global_id == gid and view.total.amount == Decimal(credit.total) / 100


async def test_renewal_then_cancellation_at_period_end(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk = lifecycle_hub, world.desk
    client = world.stripe()
    name = "Renew Then Leave GmbH"
    email = "billing@renew-then-leave.example"
    account = desk.account(
        name,
        currency="EUR",
        BillingStreet="Ring 2",
        BillingCity="Bonn",
        BillingPostalCode="53111",
        BillingCountryCode="DE",
        BillingCountry="Germany",
        Billing_Email__c=email,
    )
    # Billing runs this customer on a test clock: the hub finds it by email and global id.
    start = int(datetime.now(UTC).timestamp())
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    gid = hub.deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", account, actor="test")
    client.v1.customers.create(
        params={
            "name": name,
            "email": email,
            "test_clock": clock.id,
            "metadata": {"hub_global_id": gid},
        }
    )
    opportunity, billing_id, crm_sub = await won_deal(
        world, hub, name, "C-LC-0002", account=account
    )
    await hub.settle()
    assert_no_failures(hub)
    first_end = client.v1.subscriptions.retrieve(billing_id)["items"]["data"][0][
        "current_period_end"
    ]

    # Term end: billing renews by itself; the renewal invoice reaches the ERP to the cent.
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": first_end + 60})
    await hub.settle()
    assert_no_failures(hub)
    renewed = client.v1.subscriptions.retrieve(billing_id)
    second_end = renewed["items"]["data"][0]["current_period_end"]
    assert renewed.status == "active" and second_end > first_end
    # heard as a renewal (Stripe's previous_attributes: the items with their old period)
    heard = [e.type for e in list_events(hub.runtime, type_prefix="billing.subscription.")]
    assert heard.count("billing.subscription.renewed") == 1, heard
    assert "billing.subscription.amended" not in heard, heard
    bills = stripe_invoices(world, billing_id)
    assert [b.total for b in bills] == [26775, 26775]  # 5 seats at 45.00 plus 19 % VAT
    erp = await erp_documents(world, name)
    assert sorted(i["total_amount"] for i in erp["invoices"]) == [GROSS] * 2
    crm = desk.sf.Subscription__c.get(crm_sub)
    assert crm["Status__c"] == "Active"
    assert crm["End_Date__c"] == datetime.fromtimestamp(second_end, UTC).date().isoformat()

    # Cancellation effective at the period end: billing schedules it; nothing is credited.
    effective = datetime.fromtimestamp(second_end, UTC)
    request(desk, crm_sub, 1, previous=5, new=0, effective=effective)
    await hub.settle()
    assert_no_failures(hub)
    scheduled = client.v1.subscriptions.retrieve(billing_id)
    assert scheduled.status == "active" and scheduled.cancel_at_period_end is True
    assert desk.sf.Subscription__c.get(crm_sub)["Status__c"] == "Active"

    client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": second_end + int(timedelta(hours=1).total_seconds())}
    )
    await hub.settle()
    assert_no_failures(hub)
    assert client.v1.subscriptions.retrieve(billing_id).status == "canceled"
    assert len(stripe_invoices(world, billing_id)) == 2
    crm = desk.sf.Subscription__c.get(crm_sub)
    assert crm["Status__c"] == "Canceled"
    assert crm["End_Date__c"] == effective.date().isoformat()
    assert desk.sf.Opportunity.get(opportunity)["Subscription_Status__c"] == "Canceled"
    erp = await erp_documents(world, name)
    assert len(erp["invoices"]) == 2
