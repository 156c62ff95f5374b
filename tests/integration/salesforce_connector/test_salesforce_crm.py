"""SalesforceCrm specifics beyond the CRM contract: mapping details, batching, schema needs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from contract.crm.salesforce_harness import Line
from quote2cash.canonical import Money, TaxIdValue
from quote2cash.connectors.roles import DealActivated
from quote2cash.connectors.salesforce import SalesforceCrm
from quote2cash.connectors.salesforce.mapping import SObjectUpdate, status_record
from quote2cash.engine.errors import AuthError, DataError, MappingError
from quote2cash.sandbox.salesforce import SalesforceEmulator
from quote2cash.sandbox.systems import salesforce_config


async def test_discounted_line_keeps_list_total_and_discount(harness: Any):
    desk = harness.desk
    account = desk.account("Discount AG", "EUR")
    seat = desk.product(
        "SEAT", "Seat", {"EUR": "33.33"}, ERP_Item_Code__c="ITEM-9", Billing_Price_Id__c="price_9"
    )
    deal = desk.deal(account, "EUR", [Line(seat, 3, "33.33")], won=False)
    line_id = desk.sf.query(f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{deal}'")
    desk.sf.OpportunityLineItem.update(line_id["records"][0]["Id"], {"Discount": 10})
    desk.sf.Opportunity.update(deal, {"StageName": "Closed Won"})
    order = await harness.crm().get_deal(deal)
    (line,) = order.lines
    assert line.unit_price == Money("33.33", "EUR") and line.quantity == 3
    assert line.amount == Money("89.99", "EUR")
    assert line.discount == Money("10.00", "EUR")
    assert line.product.external_ids == {"crm": seat, "erp": "ITEM-9"}
    assert line.price_plan is not None and line.price_plan.external_ids == {"billing": "price_9"}
    assert line.description == "Seat"


async def test_account_ids_from_other_systems_ride_on_the_deal(harness: Any):
    desk = harness.desk
    account = desk.account(
        "Linked Ltd",
        "GBP",
        ERP_Customer_Number__c="CUST-1",
        Billing_Customer_Id__c="cus_1",
        Hub_Global_Id__c="cust_01HX",
    )
    seat = desk.product("SEAT", "Seat", {"GBP": "10.00"})
    deal = desk.deal(account, "GBP", [Line(seat, 2, "10.00")])
    order = await harness.crm().get_deal(deal)
    assert order.customer.global_id == "cust_01HX"
    assert order.customer.external_ids == {"crm": account, "erp": "CUST-1", "billing": "cus_1"}


async def test_fractional_seats_are_a_data_error_naming_deal_and_field(harness: Any):
    desk = harness.desk
    account = desk.account("Half Seat Inc", "USD")
    seat = desk.product("SEAT", "Seat", {"USD": "10.00"})
    deal = desk.deal(account, "USD", [Line(seat, 1, "10.00")], won=False)
    line = desk.sf.query(f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{deal}'")
    desk.sf.OpportunityLineItem.update(line["records"][0]["Id"], {"Quantity": 2.5})
    with pytest.raises(DataError) as excinfo:
        await harness.crm().get_deal(deal)
    message = str(excinfo.value)
    assert deal in message and "Quantity" in message and "2.5" in message


async def test_deal_without_products_is_a_data_error(harness: Any):
    account = harness.desk.account("Empty", "USD")
    seat = harness.desk.product("SEAT-EMPTY", "Seat", {"USD": "10.00"})
    deal = harness.desk.deal(account, "USD", [])
    good = harness.desk.deal(account, "USD", [Line(seat, 1, "10.00")])
    with pytest.raises(DataError) as excinfo:
        await harness.crm().get_deal(deal)
    assert deal in str(excinfo.value) and "OpportunityLineItems" in str(excinfo.value)
    # A listing maps the other deals and names the refused one with its reason.
    page = await harness.crm().closed_won_deals()
    assert [o.external_ids["crm"] for o in page.items] == [good]
    [refused] = page.rejected
    assert (refused.system, refused.record, refused.category) == (
        "crm",
        f"Opportunity {deal}",
        "data",
    )
    assert "OpportunityLineItems" in refused.reason and refused.raw["Id"] == deal


async def test_get_account_reads_optional_fields_when_the_org_has_them(harness: Any):
    account = harness.desk.account(
        "Full Data SARL",
        "EUR",
        Phone="+33 1 23 45 67 89",
        BillingStreet="1 rue de la Paix",
        BillingCity="Paris",
        BillingPostalCode="75002",
        BillingCountry="France",
        BillingCountryCode="FR",
        VAT_Number__c="FR40303265045",
        Billing_Email__c="ap@fulldata.example",
        Billing_Customer_Id__c="cus_42",
        Hub_Global_Id__c="cust_42",
        Legal_Entity__c="ACME-FR",
    )
    customer = await harness.crm().get_account(account)
    assert customer.tax_ids == (TaxIdValue(type="eu_vat", value="FR40303265045"),)
    assert customer.email == "ap@fulldata.example"
    assert customer.phone == "+33 1 23 45 67 89"
    assert customer.global_id == "cust_42"
    assert customer.external_ids == {"crm": account, "billing": "cus_42"}
    assert customer.legal_entity is not None
    assert customer.legal_entity.external_ids == {"crm": "ACME-FR"}
    assert customer.address is not None and customer.address.postal_code == "75002"
    bare = await harness.crm().get_account(harness.desk.account("Bare", "USD"))
    assert (bare.address, bare.email, bare.tax_ids) == (None, None, ())


async def test_publish_batches_200_per_call_and_keeps_order(harness: Any):
    crm = harness.crm()
    await crm.check()
    updates = [harness.invoice_status(f"INV-{n:04d}", "open", "1.00") for n in range(450)]
    before = harness.desk.api_usage()
    results = await crm.publish_status(updates, idempotency_key="evt-bulk:publish")
    assert harness.desk.api_usage() - before == 3
    assert [r.external_id for r in results] == [u.number for u in updates]
    assert all(r.created and r.error is None and r.crm_id for r in results)
    again = await crm.publish_status(updates, idempotency_key="evt-bulk:publish")
    assert not any(r.created or r.error for r in again)
    count = harness.desk.sf.query("SELECT COUNT() FROM Invoice__c")["totalSize"]
    assert count == 450


async def test_same_external_id_twice_in_one_call_applies_in_order(harness: Any):
    opened = harness.invoice_status("INV-DUP", "open", "5.00")
    paid = harness.invoice_status("INV-DUP", "paid", "5.00")
    results = await harness.crm().publish_status([opened, paid], idempotency_key="evt-dup")
    assert [(r.created, r.error) for r in results] == [(True, None), (False, None)]
    assert [r["Status__c"] for r in harness.stored_invoices("INV-DUP")] == ["Paid"]


async def test_deal_status_fields_update_by_record_id(harness: Any):
    desk = harness.desk
    account = desk.account("Status Co", "USD")
    seat = desk.product("SEAT", "Seat", {"USD": "10.00"})
    deal = desk.deal(account, "USD", [Line(seat, 1, "10.00")])
    update = DealActivated(deal, "sub_1", date(2026, 12, 1))
    (result,) = await harness.crm().publish_status([update], idempotency_key="evt-6")
    assert result.error is None and result.created is False
    stored = desk.sf.Opportunity.get(deal)
    assert stored["Subscription_Status__c"] == "Active"
    assert stored["Billing_Start_Date__c"] == "2026-12-01"
    desk.sf.Opportunity.delete(deal)
    (gone,) = await harness.crm().publish_status([update], idempotency_key="evt-6b")
    assert gone.error is not None and gone.created is False
    assert desk.sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 0


async def test_whole_call_refused_reports_each_record(harness: Any):
    crm = harness.crm()
    updates = [
        SObjectUpdate("Invoice__c", "Status__c", "Open", {"Amount__c": Decimal("1.00")}),
        SObjectUpdate("Invoice__c", "Status__c", "Paid", {"Amount__c": Decimal("2.00")}),
        status_record(harness.invoice_status("INV-OK", "open", "3.00"), amendment_object="x__c"),
    ]
    results = await crm.write_records(updates, idempotency_key="evt-7")
    assert [r.error is None for r in results] == [False, False, True]
    assert results[0].error is not None and "Status__c" in results[0].error


async def test_publish_raises_auth_errors(harness: Any):
    crm = harness.crm_with_bad_secret()
    with pytest.raises(AuthError):
        await crm.publish_status(
            [harness.invoice_status("INV-A", "open", "1.00")], idempotency_key="evt-8"
        )


async def test_amendment_number_from_the_request_wins(harness: Any):
    desk = harness.desk
    account = desk.account("Numbered", "EUR")
    seat = desk.product("SEAT", "Seat", {"EUR": "10.00"})
    subscription = desk.subscription(account, 5)
    request = desk.request_seat_change(
        subscription,
        seat,
        3,
        date(2027, 3, 1),
        Amendment_Number__c=4,
        Previous_Quantity__c=6,
        Billing_Subscription_Item_Id__c="si_77",
        Proration__c="always_invoice",
        Reason__c="Team shrank",
    )
    (amendment,) = (await harness.crm().amendment_requests()).items
    assert amendment.id_in("crm") == request
    assert amendment.amendment_number == 4
    assert (amendment.previous_quantity, amendment.new_quantity) == (6, 3)
    assert amendment.subscription_item.external_ids == {"billing": "si_77"}
    assert amendment.subscription.external_ids == {"crm": subscription}
    assert amendment.proration_behavior.value == "always_invoice"
    assert amendment.reason == "Team shrank"


async def test_org_without_the_amendment_object_is_a_mapping_error(tmp_path: Path):
    """An org whose schema lacks Amendment_Request__c (the packaged schema has it)."""
    from importlib import resources

    import yaml

    packaged = resources.files("quote2cash.sandbox.salesforce").joinpath("default_schema.yaml")
    document = yaml.safe_load(packaged.read_text("utf-8"))
    del document["objects"]["Amendment_Request__c"]
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    emulator = SalesforceEmulator(schema_path=schema)
    await emulator.start()
    try:
        config = salesforce_config(emulator.instance_url, emulator.ca_path)
        async with SalesforceCrm(config) as crm:
            with pytest.raises(MappingError) as excinfo:
                await crm.amendment_requests()
    finally:
        await emulator.stop()
    assert "Amendment_Request__c" in str(excinfo.value)


async def test_check_reports_usage_and_a_spent_allocation(harness: Any):
    crm = harness.crm()
    check = await crm.check()
    assert check.authenticated and "daily API requests used" in check.detail
    harness.exhaust_daily_limit()
    spent = await crm.check()
    assert (spent.reachable, spent.authenticated) == (True, True)
    assert "REQUEST_LIMIT_EXCEEDED" in spent.detail


async def test_malformed_ids_never_reach_soql(harness: Any):
    before = harness.desk.api_usage()
    with pytest.raises(DataError):
        await harness.crm().get_deal("006' OR IsWon = true OR Id = '")
    with pytest.raises(DataError):
        await harness.crm().get_account("")
    assert harness.desk.api_usage() == before


def test_config_repr_hides_secrets(harness: Any):
    config = harness.config()
    secret = config.client_secret.get_secret_value()
    assert secret not in repr(config) and secret not in repr(SalesforceCrm(config))


async def test_a_deal_billed_to_another_account_names_it_as_bill_to(harness: Any):
    desk = harness.desk
    buyer = desk.account("Buyer GmbH", "EUR")
    treasury = desk.account("Treasury GmbH", "EUR")
    seat = desk.product("SEAT", "Seat", {"EUR": "10.00"})
    billed = desk.deal(buyer, "EUR", [Line(seat, 1, "10.00")], Bill_To_Account__c=treasury)
    own = desk.deal(buyer, "EUR", [Line(seat, 1, "10.00")], Bill_To_Account__c=buyer)
    plain = desk.deal(buyer, "EUR", [Line(seat, 1, "10.00")])
    crm = harness.crm()
    order = await crm.get_deal(billed)
    assert order.customer.id_in("crm") == buyer
    assert order.bill_to is not None and order.bill_to.external_ids == {"crm": treasury}
    assert (await crm.get_deal(own)).bill_to is None
    assert (await crm.get_deal(plain)).bill_to is None
    # an org without the lookup: configured off, every deal bills its own account
    assert (await harness.crm(opportunity_bill_to_field=None).get_deal(billed)).bill_to is None


async def test_account_parent_and_every_tax_registration_are_mapped(harness: Any):
    desk = harness.desk
    holding = desk.account("Holding AG", "EUR")
    child = desk.account(
        "Child GmbH", "EUR", ParentId=holding, VAT_Number__c="DE811569869", EIN__c="04-2103594"
    )
    customer = await harness.crm().get_account(child)
    assert customer.parent is not None and customer.parent.external_ids == {"crm": holding}
    assert [t.as_pair() for t in customer.tax_ids] == [
        ("eu_vat", "DE811569869"),
        ("us_ein", "04-2103594"),
    ]
    top = await harness.crm().get_account(holding)
    assert top.parent is None and top.tax_ids == () and top.credit_limit is None
    desk.sf.Account.update(child, {"Credit_Limit__c": 25000})
    limited = await harness.crm().get_account(child)
    assert limited.credit_limit == Money("25000.00", "EUR")


async def test_hub_managed_fields_are_read_only_to_a_sales_rep(harness: Any):
    """Field-level security in the emulator: the integration user writes them, a rep cannot."""
    from simple_salesforce.exceptions import SalesforceMalformedRequest

    desk = harness.desk
    account = desk.account("Guarded GmbH", "EUR", Legal_Entity__c="DE")
    rep = desk.sales_rep()
    for field, value in (
        ("VAT_Number__c", "DE811569869"),
        ("Legal_Entity__c", "US"),
        ("Hub_Global_Id__c", "CUS-x"),
        ("ERP_Customer_Number__c", "7"),
    ):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            rep.Account.update(account, {field: value})
        assert "INVALID_FIELD_FOR_INSERT_UPDATE" in str(refused.value) and field in str(
            refused.value
        )
    rep.Account.update(account, {"Name": "Guarded AG", "Phone": "+49 1"})
    shown = desk.sf.Account.get(account)
    assert (shown["Name"], shown["Legal_Entity__c"]) == ("Guarded AG", "DE")
    desk.sf.Account.update(account, {"Legal_Entity__c": "US"})
    assert desk.sf.Account.get(account)["Legal_Entity__c"] == "US"
