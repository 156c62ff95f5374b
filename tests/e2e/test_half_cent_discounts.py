"""A half-cent discount: 12.5 % off 23 x 49.00 is 986.125, which Salesforce rounds half-even to
986.12; the deal is billed at it and, after seat changes, the ERP bookings add up to billing's
per-period charge to the cent. Read from each system directly.

In a module of its own: the e2e world's CRM is shared per module, and a second hub there would
poll the first test's deals again."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from contract.crm.salesforce_harness import Line
from e2e.conftest import World, running_hub, sf_products
from e2e.test_bundles import sale_lines
from quote2cash.engine.queries import failed_events


async def test_a_half_cent_discount_is_accepted_and_bookings_follow_billing(
    world: World, tmp_path: Path
) -> None:
    """12.5 % off 23 x 49.00 is 986.125: Salesforce says 986.12 (half-even); the deal is billed
    at it, and after seat changes the ERP bookings add up to billing's charge to the cent."""
    desk = world.desk
    products = sf_products(desk)
    account = desk.account(
        "Half Cent Inc.",
        currency="USD",
        BillingStreet="5 Rounding Way",
        BillingCity="Austin",
        BillingState="TX",
        BillingPostalCode="78701",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    contract = "C-DI-0003"
    opportunity = desk.deal(
        account,
        "USD",
        [Line(products["PLAT-SEAT"], 23, "49.00", discount="12.5")],
        name="Half cent",
        Contract_Number__c=contract,
    )
    [line] = desk.sf.query(
        f"SELECT TotalPrice FROM OpportunityLineItem WHERE OpportunityId = '{opportunity}'"
    )["records"]
    assert Decimal(str(line["TotalPrice"])) == Decimal("986.12")
    async with running_hub(world, tmp_path) as hub:
        await hub.settle()
        assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
        client = world.stripe()
        billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
        [first] = client.v1.invoices.list(params={"subscription": billing_id}).data
        assert first.total == 98612
        [(item, _, amount)] = await sale_lines(world, contract)  # 986.12 / 23 is no unit price
        assert (item, amount) == ("PLAT-SEAT", Decimal("986.12"))

        [crm_sub] = desk.sf.query(
            f"SELECT Id FROM Subscription__c WHERE Billing_Subscription_Id__c = '{billing_id}'"
        )["records"]
        for number, (before, after) in enumerate([(23, 24), (24, 31)], start=1):
            desk.request_seat_change(
                crm_sub["Id"],
                products["PLAT-SEAT"],
                after,
                datetime.now(UTC).date(),
                Amendment_Number__c=number,
                Previous_Quantity__c=before,
                Proration__c="create_prorations",
            )
            await hub.settle()
        assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
        sub = client.v1.subscriptions.retrieve(billing_id)
        [item] = sub["items"]["data"]
        assert item["quantity"] == 31 and len(item["discounts"]) == 1
        # Billing charges 31 x 49.00 = 1519.00 less round(189.875) = 1329.12 a period.
        booked = [
            amount
            for reference in (contract, f"{contract}/A1", f"{contract}/A2")
            for *_, amount in await sale_lines(world, reference)
        ]
        assert sum(booked) == Decimal("1329.12")
