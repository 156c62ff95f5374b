"""Account hierarchies end to end: a deal sold to one account and billed to another (its group's
treasury) bills the bill-to account in billing and the ERP while the contract stays on the
sold-to account in the CRM; the CRM's parent accounts become the golden record's hierarchy and
follow the CRM when they change. Read from Tryton, Stripe and Salesforce themselves."""

from __future__ import annotations

from typing import Any

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from e2e.test_ownership import settle_with_accounts
from quote2cash.engine.queries import failed_events

GERMAN: dict[str, Any] = {
    "BillingCity": "Hamburg",
    "BillingPostalCode": "20457",
    "BillingCountryCode": "DE",
    "BillingCountry": "Germany",
}


async def test_bill_to_is_billed_sold_to_keeps_the_contract_and_parents_are_kept(
    world: World, hub: Hub
) -> None:
    desk = world.desk
    holding = desk.account("Hanse Holding AG", "EUR", BillingStreet="Am Sandtorkai 1", **GERMAN)
    treasury = desk.account(
        "Hanse Treasury GmbH",
        "EUR",
        BillingStreet="Am Sandtorkai 2",
        ParentId=holding,
        VAT_Number__c="DE811569869",
        **GERMAN,
    )
    buyer = desk.account(
        "Hanse Logistik GmbH", "EUR", BillingStreet="Kehrwieder 3", ParentId=holding, **GERMAN
    )
    products = sf_products(desk)
    deal = desk.deal(
        buyer,
        "EUR",
        [Line(products["PLAT-SEAT"], 5, "45.00")],
        name="Hanse platform",
        Contract_Number__c="C-HANSE-1",
        Bill_To_Account__c=treasury,
    )
    await settle_with_accounts(hub)
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]

    # Billing: the treasury is the customer invoiced; the buyer is no billing customer.
    client = world.stripe()
    names = {c.name: c for c in client.v1.customers.list().auto_paging_iter()}
    assert "Hanse Logistik GmbH" not in names
    subscriptions = client.v1.subscriptions.list(
        params={"customer": names["Hanse Treasury GmbH"].id}
    ).data
    assert [s.metadata["contract_number"] for s in subscriptions] == ["C-HANSE-1"]

    # ERP: the sale and its invoice are the treasury's.
    async with world.erp_client() as erp:
        assert not await erp.model("party.party").search([("name", "=", "Hanse Logistik GmbH")])
        [party] = await erp.model("party.party").search([("name", "=", "Hanse Treasury GmbH")])
        sales = await erp.model("sale.sale").search_read([("party", "=", party)], ["state"])
        invoices = await erp.model("account.invoice").search_read(
            [("party", "=", party), ("type", "=", "out")], ["state"]
        )
    assert len(sales) == 1 and [i["state"] for i in invoices] == ["posted"]

    # CRM: the contract on the sold-to account, the invoice and the hub's ids on the bill-to.
    [contract] = desk.sf.query(
        f"SELECT Account__c FROM Subscription__c WHERE Opportunity__c = '{deal}'"
    )["records"]
    assert contract["Account__c"] == buyer
    [invoice] = desk.sf.query("SELECT Account__c FROM Invoice__c")["records"]
    assert invoice["Account__c"] == treasury
    assert desk.sf.Account.get(treasury)["Hub_Global_Id__c"]
    assert desk.sf.Account.get(buyer)["Hub_Global_Id__c"] is None

    # The golden record keeps the CRM's hierarchy, and follows it when it changes.
    xref = hub.deps.xref
    treasury_gid = xref.global_id_for("customer", "crm", treasury)
    holding_gid = xref.global_id_for("customer", "crm", holding)
    assert treasury_gid is not None and holding_gid is not None
    assert xref.parent_of(treasury_gid) == holding_gid
    assert xref.children_of(holding_gid) == [treasury_gid]
    desk.sf.Account.update(treasury, {"ParentId": None})
    await settle_with_accounts(hub)
    assert xref.parent_of(treasury_gid) is None
    history = xref.hierarchy_history(treasury_gid)
    assert [(h.parent, h.valid_to is None) for h in history] == [(holding_gid, False)]
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
