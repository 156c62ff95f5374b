"""A sales rep closes a deal; the hub carries it to billing and the ERP and back to the CRM.

Everything is checked by reading each system directly: Salesforce through simple-salesforce,
Stripe through the official SDK, Tryton over JSON-RPC.
"""

from __future__ import annotations

from decimal import Decimal

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from quote2cash.engine.queries import failed_events, list_events


async def test_german_deal_end_to_end(world: World, hub: Hub) -> None:
    desk = world.desk
    products = sf_products(desk)
    account = desk.account(
        "Müller Maschinenbau GmbH",
        currency="EUR",
        BillingStreet="Industriestr. 5",
        BillingCity="Stuttgart",
        BillingPostalCode="70173",
        BillingCountryCode="DE",
        BillingCountry="Germany",
    )
    opportunity = desk.deal(
        account,
        "EUR",
        [Line(products["PLAT-SEAT"], 5, "45.00")],
        name="Müller platform",
        Contract_Number__c="C-DE-0001",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]

    # Billing: one customer, one subscription of 5 seats, its first invoice 225.00 EUR plus
    # 19 % German VAT (42.75).
    client = world.stripe()
    customers = [
        c
        for c in client.v1.customers.list().auto_paging_iter()
        if c.name == "Müller Maschinenbau GmbH"
    ]
    assert len(customers) == 1
    subs = list(client.v1.subscriptions.list(params={"customer": customers[0].id}).data)
    assert len(subs) == 1 and subs[0]["items"]["data"][0]["quantity"] == 5
    assert subs[0].metadata["contract_number"] == "C-DE-0001"
    invoices = list(client.v1.invoices.list(params={"customer": customers[0].id}).data)
    assert len(invoices) == 1 and invoices[0].currency == "eur"
    assert (invoices[0].total_excluding_tax, invoices[0].total) == (22500, 26775)

    # ERP: the customer once, the invoice posted in the EUR entity, equal to the cent.
    async with world.erp_client() as erp:
        parties = await erp.model("party.party").search_read(
            [("name", "=", "Müller Maschinenbau GmbH")], ["id"]
        )
        assert len(parties) == 1
        posted = await erp.model("account.invoice").search_read(
            [("party", "=", parties[0]["id"]), ("type", "=", "out")],
            ["total_amount", "state", "currency.code", "company.rec_name"],
        )
        assert len(posted) == 1
        assert posted[0]["total_amount"] == Decimal("267.75")
        assert posted[0]["state"] == "posted"
        assert posted[0]["currency."]["code"] == "EUR"
        assert "GmbH" in posted[0]["company."]["rec_name"]

    # CRM: ids written back, subscription active, invoice visible.
    acct = desk.sf.Account.get(account)
    assert acct["Billing_Customer_Id__c"] == customers[0].id
    assert acct["ERP_Customer_Number__c"] and acct["Hub_Global_Id__c"]
    opp = desk.sf.Opportunity.get(opportunity)
    assert opp["Subscription_Id__c"] == subs[0].id
    assert opp["Subscription_Status__c"] == "Active"
    crm_invoices = desk.sf.query("SELECT Amount__c, Status__c FROM Invoice__c")["records"]
    assert [(Decimal(str(i["Amount__c"])), i["Status__c"]) for i in crm_invoices] == [
        (Decimal("267.75"), "Open")
    ]

    # The customer pays: ERP applies it, the CRM shows it paid.
    client.v1.invoices.pay(invoices[0].id, params={"paid_out_of_band": True})
    await hub.settle()
    assert failed_events(hub.runtime) == []
    async with world.erp_client() as erp:
        paid = await erp.model("account.invoice").search_read(
            [("party", "=", parties[0]["id"])], ["state"]
        )
        assert [p["state"] for p in paid] == ["paid"]
    crm_invoices = desk.sf.query("SELECT Status__c, Balance__c FROM Invoice__c")["records"]
    assert (
        crm_invoices[0]["Status__c"] == "Paid" and Decimal(str(crm_invoices[0]["Balance__c"])) == 0
    )

    # One correlation id from the deal to the payment.
    rows = list_events(hub.runtime, limit=500)
    handled = [
        r
        for r in rows
        if r.type
        in (
            "crm.opportunity.closed_won",
            "billing.subscription.activated",
            "billing.invoice.finalized",
            "billing.payment.succeeded",
        )
    ]
    assert {r.type for r in handled} == {
        "crm.opportunity.closed_won",
        "billing.subscription.activated",
        "billing.invoice.finalized",
        "billing.payment.succeeded",
    }
    assert len({r.correlation_id for r in handled}) == 1
    assert {r.subject for r in handled} == {"contract:C-DE-0001"}
