"""A rep sells seats at a discount: billing charges the discounted price (a coupon on the seat
item), so the ERP booking, billing's invoices, the ERP's invoices and the CRM agree to the cent,
and a mid-term seat increase is prorated at the discounted price too; a typed price billing cannot
charge exactly is an exception with its reason.

Everything is checked by reading each system directly: Salesforce through simple-salesforce,
Stripe through the official SDK, Tryton over JSON-RPC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from e2e.test_bundles import sale_lines
from quote2cash.engine.queries import failed_events

NAME = "Rabatt Analytics Inc."
CONTRACT = "C-DI-0001"


async def erp_invoice_totals(world: World, party_name: str) -> dict[str, Decimal]:
    """The ERP's posted customer invoices of one party: reference (billing id) -> total."""
    async with world.erp_client() as erp:
        [party] = await erp.model("party.party").search_read([("name", "=", party_name)], ["id"])
        rows = await erp.model("account.invoice").search_read(
            [("party", "=", party["id"]), ("type", "=", "out"), ("state", "=", "posted")],
            ["total_amount", "reference"],
        )
    return {str(r["reference"]): Decimal(r["total_amount"]) for r in rows}


async def test_a_discounted_deal_is_billed_booked_and_invoiced_at_its_price(
    world: World, hub: Hub
) -> None:
    desk = world.desk
    products = sf_products(desk)
    account = desk.account(
        NAME,
        currency="USD",
        BillingStreet="100 Congress Ave",
        BillingCity="Austin",
        BillingState="TX",
        BillingPostalCode="78701",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    opportunity = desk.deal(
        account,
        "USD",
        [
            Line(products["PLAT-SEAT"], 10, "49.00", discount="15"),
            Line(products["SUPPORT-PREM"], 1, "199.00"),
        ],
        name="Rabatt platform",
        Contract_Number__c=CONTRACT,
    )
    [seat_total] = desk.sf.query(
        "SELECT TotalPrice FROM OpportunityLineItem WHERE OpportunityId = "
        f"'{opportunity}' AND Product2Id = '{products['PLAT-SEAT']}'"
    )["records"]
    assert Decimal(str(seat_total["TotalPrice"])) == Decimal("416.50")
    # Another rep typed a sales price of 44.00 a seat: 10.2041 % off billing's 49.00, which no
    # two-decimal coupon charges exactly; that deal is an exception and nothing is written.
    odd_account = desk.account(
        "Odd Price LLC",
        currency="USD",
        BillingStreet="1 Main St",
        BillingCity="Boston",
        BillingState="MA",
        BillingPostalCode="02110",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    desk.deal(
        odd_account,
        "USD",
        [Line(products["PLAT-SEAT"], 7, "44.00")],
        name="Odd price",
        Contract_Number__c="C-DI-0002",
    )
    await hub.settle()
    [odd] = failed_events(hub.runtime)
    assert odd.subject == "contract:C-DI-0002" and odd.status == "exception"
    assert "lines[0] (PLAT-SEAT)" in str(odd.last_error)
    assert "10.2041% off billing's price 49.00 x 7" in str(odd.last_error)
    client = world.stripe()
    named = [c.name for c in client.v1.customers.list().auto_paging_iter()]
    assert "Odd Price LLC" not in named and NAME in named

    # Billing: the seat item carries a 15 % forever coupon, support none; the first invoice
    # charges 10 x 49.00 less 15 % plus 199.00.
    billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    sub = client.v1.subscriptions.retrieve(billing_id)
    discounts = {i["price"]["lookup_key"]: i["discounts"] for i in sub["items"]["data"]}
    assert len(discounts["plat_seat_monthly_usd"]) == 1
    assert discounts["support_prem_monthly_usd"] == []
    coupon = client.v1.coupons.retrieve("q2c-15pct")
    assert (coupon.percent_off, coupon.duration) == (15, "forever")
    [first] = client.v1.invoices.list(params={"subscription": billing_id}).data
    assert sum(line.amount for line in first.lines.data) == 68900  # list prices
    assert [d.amount for d in first.total_discount_amounts] == [7350]
    assert first.total == 61550

    # ERP: the booking and the posted invoice both at the deal's price; CRM the same.
    booked = await sale_lines(world, CONTRACT)
    assert booked == [("PLAT-SEAT", 10, Decimal("416.50")), ("SUPPORT-PREM", 1, Decimal("199.00"))]
    assert list((await erp_invoice_totals(world, NAME)).values()) == [Decimal("615.50")]
    [crm_invoice] = desk.invoices(str(first.number))
    assert Decimal(str(crm_invoice["Amount__c"])) == Decimal("615.50")

    # Five more seats mid-term, invoiced now: prorated at the discounted price everywhere.
    [crm_sub] = desk.sf.query(
        f"SELECT Id FROM Subscription__c WHERE Billing_Subscription_Id__c = '{billing_id}'"
    )["records"]
    desk.request_seat_change(
        crm_sub["Id"],
        products["PLAT-SEAT"],
        15,
        datetime.now(UTC).date(),
        Amendment_Number__c=1,
        Previous_Quantity__c=10,
        Proration__c="always_invoice",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [odd], [e.last_error for e in failed_events(hub.runtime)]
    invoices = client.v1.invoices.list(params={"subscription": billing_id}).data
    [proration] = [i for i in invoices if i.id != first.id]
    lines = proration.lines.data
    assert lines and all(line.discounts for line in lines)
    assert all(a.amount == 0 for line in lines for a in line.discount_amounts)
    seconds = lines[0].period.end - lines[0].period.start
    full = (
        sub["items"]["data"][0]["current_period_end"]
        - sub["items"]["data"][0]["current_period_start"]
    )
    undiscounted = Decimal(5 * 4900 * seconds) / full
    assert proration.total < undiscounted  # the 15 % is in the prorated amount
    totals = await erp_invoice_totals(world, NAME)
    net = Decimal(proration.total) / 100
    assert sorted(totals.values()) == sorted([Decimal("615.50"), net])
    [crm_proration] = desk.invoices(str(proration.number))
    assert Decimal(str(crm_proration["Amount__c"])) == net
    assert await sale_lines(world, f"{CONTRACT}/A1") == [
        ("PLAT-SEAT", 5, Decimal("208.25")),
    ]
