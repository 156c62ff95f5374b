"""A rep sells the PLATFORM-PRO bundle (a premium support plan with every seat, as the CRM prices
it) at a discount; billing gets both prices for every unit, the ERP books both items at what
billing charges for them, to the cent and adding up to the CRM line, and a seat amendment moves
both items in billing and in the ERP.

Everything is checked by reading each system directly: Salesforce through simple-salesforce,
Stripe through the official SDK, Tryton over JSON-RPC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from quote2cash.engine.queries import failed_events

NAME = "Bündel Software GmbH"
CONTRACT = "C-BU-0001"


async def sale_lines(world: World, reference: str) -> list[tuple[str, int, Decimal]]:
    """The confirmed ERP sale's lines as (item code, quantity, amount), in line order."""
    async with world.erp_client() as erp:
        [sale] = await erp.model("sale.sale").search_read(
            [("reference", "=", reference)], ["state", "total_amount"]
        )
        lines: list[dict[str, Any]] = await erp.model("sale.line").search_read(
            [("sale", "=", sale["id"])],
            ["product.code", "quantity", "amount"],
            order=[("id", "ASC")],
        )
    assert sale["state"] == "processing"
    assert sum(line["amount"] for line in lines) == sale["total_amount"]
    return [(line["product."]["code"], int(line["quantity"]), line["amount"]) for line in lines]


async def test_bundle_books_its_items_and_a_seat_amendment_moves_only_seats(
    world: World, hub: Hub
) -> None:
    desk = world.desk
    products = sf_products(desk)
    account = desk.account(
        NAME,
        currency="EUR",
        BillingStreet="Schillerstr. 9",
        BillingCity="Leipzig",
        BillingPostalCode="04109",
        BillingCountryCode="DE",
        BillingCountry="Germany",
    )
    opportunity = desk.deal(
        account,
        "EUR",
        [Line(products["PLATFORM-PRO"], 10, "224.00", discount="5")],
        name="Bündel platform pro",
        Contract_Number__c=CONTRACT,
    )
    [line] = desk.sf.query(
        f"SELECT TotalPrice FROM OpportunityLineItem WHERE OpportunityId = '{opportunity}'"
    )["records"]
    crm_amount = Decimal(str(line["TotalPrice"]))
    assert crm_amount == Decimal("2128.00")  # 10 x 224.00 less 5 %
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]

    # Billing: the seat price and the premium support plan for each of the 10 units.
    client = world.stripe()
    billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    sub = client.v1.subscriptions.retrieve(billing_id)
    items = {i["price"]["lookup_key"]: i["quantity"] for i in sub["items"]["data"]}
    assert items == {"plat_seat_monthly_eur": 10, "support_prem_monthly_eur": 10}
    [bill] = client.v1.invoices.list(params={"subscription": billing_id}).data
    assert bill.total_excluding_tax == 212800  # billing charges the CRM's amount

    # ERP: one sale, the bundle as its two items at billing's charge for each (5 % off 450.00
    # and 1790.00), adding up exactly to the CRM line and billing's invoice.
    booked = await sale_lines(world, CONTRACT)
    assert booked == [
        ("PLAT-SEAT", 10, Decimal("427.50")),
        ("SUPPORT-PREM", 10, Decimal("1700.50")),
    ]
    assert sum(amount for _, _, amount in booked) == crm_amount

    # The rep amends the bundle to 12 units: billing's seat and support items both move.
    [crm_sub] = desk.sf.query(
        f"SELECT Id FROM Subscription__c WHERE Billing_Subscription_Id__c = '{billing_id}'"
    )["records"]
    request = desk.request_seat_change(
        crm_sub["Id"],
        products["PLATFORM-PRO"],
        12,
        datetime.now(UTC).date(),
        Amendment_Number__c=1,
        Previous_Quantity__c=10,
        Proration__c="create_prorations",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    sub = client.v1.subscriptions.retrieve(billing_id)
    items = {i["price"]["lookup_key"]: i["quantity"] for i in sub["items"]["data"]}
    assert items == {"plat_seat_monthly_eur": 12, "support_prem_monthly_eur": 12}
    applied = desk.sf.Amendment_Request__c.get(request)
    assert applied["Status__c"] == "Applied" and applied["Previous_Quantity__c"] == 10

    # ERP: the amendment sale moves both items by billing's charge for 12 less for 10 units;
    # the bookings add up to what billing charges a period for 12 (12 x 224.00 less 5 %).
    amended = await sale_lines(world, f"{CONTRACT}/A1")
    assert amended == [
        ("PLAT-SEAT", 2, Decimal("85.50")),
        ("SUPPORT-PREM", 2, Decimal("340.10")),
    ]
    assert sum(a for *_, a in booked + amended) == Decimal("2553.60")
    assert await sale_lines(world, CONTRACT) == booked
