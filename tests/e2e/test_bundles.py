"""A rep sells the PLATFORM-PRO bundle (seats plus one premium support plan per line) at a
discount; billing gets both prices, the ERP books both items with the line's amount split by
standalone price to the cent, and a seat amendment moves only the seat item.

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

    # Billing: the seat price for 10 seats and one premium support plan.
    client = world.stripe()
    billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    sub = client.v1.subscriptions.retrieve(billing_id)
    items = {i["price"]["lookup_key"]: i["quantity"] for i in sub["items"]["data"]}
    assert items == {"plat_seat_monthly_eur": 10, "support_prem_monthly_eur": 1}

    # ERP: one sale, the bundle as its two items, split 450.00 : 179.00 (standalone prices x
    # quantities) to the cent and adding up exactly to the CRM line.
    booked = await sale_lines(world, CONTRACT)
    assert booked == [
        ("PLAT-SEAT", 10, Decimal("1522.42")),
        ("SUPPORT-PREM", 1, Decimal("605.58")),
    ]
    assert sum(amount for _, _, amount in booked) == crm_amount

    # The rep amends the bundle to 12 seats: billing's seat item moves, support stays.
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
    assert items == {"plat_seat_monthly_eur": 12, "support_prem_monthly_eur": 1}
    applied = desk.sf.Amendment_Request__c.get(request)
    assert applied["Status__c"] == "Applied" and applied["Previous_Quantity__c"] == 10

    # ERP: the amendment sale has the seat item only, 2 seats at its allocated 152.24 a seat.
    assert await sale_lines(world, f"{CONTRACT}/A1") == [
        ("PLAT-SEAT", 2, Decimal("304.48")),
    ]
    assert await sale_lines(world, CONTRACT) == booked
