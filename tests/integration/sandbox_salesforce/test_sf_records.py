"""CRUD, upsert by external id, describe, validation errors, derived fields, exact decimals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from .conftest import admin

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def error_of(excinfo: pytest.ExceptionInfo[Exception]) -> dict:
    content = excinfo.value.content  # type: ignore[attr-defined]
    assert isinstance(content, list) and len(content) == 1
    return content[0]


def test_account_create_get_update_delete(sf: Salesforce):
    created = sf.Account.create(
        {
            "Name": "Acme GmbH",
            "BillingCity": "Berlin",
            "BillingCountryCode": "DE",
            "Industry": "Manufacturing",
            "CurrencyIsoCode": "EUR",
        }
    )
    assert created["success"] is True and created["errors"] == []
    account_id = created["id"]
    assert len(account_id) == 18 and account_id.startswith("001")
    record = sf.Account.get(account_id)
    assert record["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v59.0/sobjects/Account/{account_id}",
    }
    assert record["Name"] == "Acme GmbH" and record["BillingCity"] == "Berlin"
    assert record["IsDeleted"] is False and record["Website"] is None
    for stamp in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert ISO.match(record[stamp]), record[stamp]
    assert sf.Account.update(account_id, {"Website": "https://acme.example"}) == 204
    assert sf.Account.get(account_id)["Website"] == "https://acme.example"
    partial = sf.Account.get(account_id, params={"fields": "Name,Website"})
    assert set(partial) == {"attributes", "Name", "Website"}
    assert sf.Account.get(account_id[:15])["Id"] == account_id
    assert sf.Account.delete(account_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as excinfo:
        sf.Account.get(account_id)
    assert error_of(excinfo)["errorCode"] == "NOT_FOUND"
    deleted = sf.query_all("SELECT Id, IsDeleted FROM Account", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in deleted["records"]] == [(account_id, True)]
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_key_prefixes_per_object(sf: Salesforce):
    account = sf.Account.create({"Name": "A"})["id"]
    contact = sf.Contact.create({"LastName": "Doe", "AccountId": account})["id"]
    product = sf.Product2.create({"Name": "Seat", "IsActive": True})["id"]
    subscription = sf.Subscription__c.create({"Account__c": account})["id"]
    invoice = sf.Invoice__c.create({"Invoice_Number__c": "INV-1"})["id"]
    assert [i[:3] for i in (account, contact, product)] == ["001", "003", "01t"]
    assert subscription.startswith("a") and invoice.startswith("a")
    assert subscription[:3] != invoice[:3]
    assert sf.Contact.get(contact)["Name"] == "Doe"


def test_custom_object_crud_and_exact_decimals(sf: Salesforce):
    created = sf.Invoice__c.create(
        {
            "Invoice_Number__c": "INV-2026-0001",
            "Amount__c": 1234.56,
            "Balance__c": 0.1,
            "Due_Date__c": "2026-12-31",
            "Status__c": "Open",
        }
    )
    raw = sf.session.get(
        f"{sf.base_url}sobjects/Invoice__c/{created['id']}", headers=sf.headers
    ).text
    assert '"Amount__c":1234.56' in raw and '"Balance__c":0.10' in raw
    exact = Salesforce(
        instance_url=f"https://{sf.sf_instance}",
        session_id=sf.session_id,
        session=sf.session,
        parse_float=Decimal,
    )
    record = exact.query("SELECT Amount__c, Due_Date__c FROM Invoice__c")["records"][0]
    assert record["Amount__c"] == Decimal("1234.56")
    assert record["Due_Date__c"] == "2026-12-31"
    by_number = sf.Invoice__c.get_by_custom_id("Invoice_Number__c", "INV-2026-0001")
    assert by_number["Id"] == created["id"]
    assert sf.Invoice__c.update(created["id"], {"Status__c": "Paid", "Balance__c": 0}) == 204
    assert sf.Invoice__c.get(created["id"])["Status__c"] == "Paid"
    assert sf.Invoice__c.delete(created["id"]) == 204


def test_upsert_by_external_id_creates_201_then_updates_204(sf: Salesforce):
    first = sf.Account.upsert(
        "ERP_Customer_Number__c/C-100", {"Name": "Beta AG"}, raw_response=True
    )
    assert first.status_code == 201
    body = first.json()
    assert body["success"] is True and body["created"] is True and body["errors"] == []
    second = sf.Account.upsert("ERP_Customer_Number__c/C-100", {"Name": "Beta AG (renamed)"})
    assert second == 204
    record = sf.Account.get_by_custom_id("ERP_Customer_Number__c", "C-100")
    assert record["Id"] == body["id"] and record["Name"] == "Beta AG (renamed)"
    assert record["ERP_Customer_Number__c"] == "C-100"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 1


def test_upsert_update_only_refuses_to_create(sf: Salesforce):
    with pytest.raises(SalesforceResourceNotFound):
        sf.restful(
            "sobjects/Account/ERP_Customer_Number__c/NEW-1",
            method="PATCH",
            params={"updateOnly": "true"},
            json={"Name": "Nope"},
        )
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_upsert_with_several_matches_is_300(sf: Salesforce):
    for name in ("One", "Two"):
        sf.Account.create({"Name": name, "Billing_Customer_Id__c": "cus_dup"})
    with pytest.raises(SalesforceMoreThanOneRecord) as excinfo:
        sf.Account.upsert("Billing_Customer_Id__c/cus_dup", {"Name": "Three"})
    assert excinfo.value.status == 300
    assert len(excinfo.value.content) == 2
    assert all(
        u.startswith("/services/data/v59.0/sobjects/Account/001") for u in excinfo.value.content
    )
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Account.get_by_custom_id("Billing_Customer_Id__c", "cus_dup")


def test_upsert_on_field_that_is_not_external_id_is_not_found(sf: Salesforce):
    with pytest.raises(SalesforceResourceNotFound) as excinfo:
        sf.Account.upsert("Website/x", {"Name": "X"})
    assert "external ID field" in error_of(excinfo)["message"]


def test_unique_external_id_rejects_duplicates(sf: Salesforce):
    sf.Account.create({"Name": "A", "ERP_Customer_Number__c": "C-1"})
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.Account.create({"Name": "B", "ERP_Customer_Number__c": "c-1"})
    assert error_of(excinfo)["errorCode"] == "DUPLICATE_VALUE"


@pytest.mark.parametrize(
    "body,code,fields",
    [
        ({"Name": "X", "Bogus__c": 1}, "INVALID_FIELD", None),
        ({"Website": "x"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ({"Name": "X", "AnnualRevenue": "lots"}, "JSON_PARSER_ERROR", None),
        ({"Name": "X", "NumberOfEmployees": 1.5}, "JSON_PARSER_ERROR", None),
        (
            {"Name": "X", "AnnualRevenue": {"a": 1}},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            ["AnnualRevenue"],
        ),
        (
            {"Name": "X", "ParentId": "001000000000000AAA"},
            "INVALID_CROSS_REFERENCE_KEY",
            ["ParentId"],
        ),
        ({"Name": "X", "ParentId": "not-an-id"}, "MALFORMED_ID", ["ParentId"]),
        (
            {"Name": "X", "CurrencyIsoCode": "XYZ"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ["CurrencyIsoCode"],
        ),
        ({"Name": "X" * 256}, "STRING_TOO_LONG", ["Name"]),
        ({"Name": "X", "AnnualRevenue": 1e30}, "NUMBER_OUTSIDE_VALID_RANGE", ["AnnualRevenue"]),
        (
            {"Name": "X", "CreatedDate": "2026-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["CreatedDate"],
        ),
    ],
)
def test_create_validation_errors(sf: Salesforce, body, code, fields):
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.Account.create(body)
    error = error_of(excinfo)
    assert error["errorCode"] == code
    if fields is not None:
        assert error["fields"] == fields
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_reference_to_wrong_object_type(sf: Salesforce):
    account = sf.Account.create({"Name": "A"})["id"]
    contact = sf.Contact.create({"LastName": "Doe", "AccountId": account})["id"]
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.Opportunity.create(
            {
                "Name": "O",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                "AccountId": contact,
            }
        )
    assert error_of(excinfo)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


def test_unknown_record_and_unknown_object_are_404(sf: Salesforce):
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get("001000000000000AAA")
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.update("001000000000000AAA", {"Name": "x"})
    with pytest.raises(SalesforceResourceNotFound):
        sf.Nope__c.create({"Name": "x"})


def test_describe_account_fields(sf: Salesforce):
    describe = sf.Account.describe()
    assert describe["name"] == "Account" and describe["keyPrefix"] == "001"
    fields = {f["name"]: f for f in describe["fields"]}
    for name in (
        "Name",
        "AccountNumber",
        "Website",
        "BillingStreet",
        "BillingCity",
        "BillingState",
        "BillingPostalCode",
        "BillingCountry",
        "BillingCountryCode",
        "ShippingCity",
        "Phone",
        "Industry",
        "ParentId",
        "CurrencyIsoCode",
        "ERP_Customer_Number__c",
        "Billing_Customer_Id__c",
        "Hub_Global_Id__c",
    ):
        assert name in fields, name
    for f in fields.values():
        assert {
            "name",
            "type",
            "label",
            "externalId",
            "nillable",
            "updateable",
            "createable",
            "referenceTo",
            "relationshipName",
        } <= set(f)
    assert fields["ERP_Customer_Number__c"]["externalId"] is True
    assert fields["ERP_Customer_Number__c"]["custom"] is True
    assert fields["Name"]["nillable"] is False and fields["Name"]["type"] == "string"
    assert fields["ParentId"]["referenceTo"] == ["Account"]
    assert fields["ParentId"]["relationshipName"] == "Parent"
    assert fields["Id"]["createable"] is False
    children = {c["relationshipName"]: c for c in describe["childRelationships"]}
    assert children["Opportunities"]["childSObject"] == "Opportunity"
    opportunity = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert opportunity["Amount"]["type"] == "currency"
    assert opportunity["IsWon"]["createable"] is False
    assert opportunity["Contract_Number__c"]["externalId"] is True


def test_describe_global_and_sobject_basic_info(sf: Salesforce):
    names = {o["name"]: o for o in sf.describe()["sobjects"]}
    expected = {
        "Account": "001",
        "Contact": "003",
        "Opportunity": "006",
        "OpportunityLineItem": "00k",
        "Product2": "01t",
        "Pricebook2": "01s",
        "PricebookEntry": "01u",
        "Contract": "800",
        "Order": "801",
        "OrderItem": "802",
    }
    for name, prefix in expected.items():
        assert names[name]["keyPrefix"] == prefix
    assert names["Invoice__c"]["custom"] is True
    info = sf.Invoice__c.metadata()
    assert info["objectDescribe"]["name"] == "Invoice__c"
    assert "recentItems" in info


def test_versions_and_resources(sf: Salesforce):
    versions = sf.session.get(f"https://{sf.sf_instance}/services/data/").json()
    assert {"label", "url", "version"} <= set(versions[0])
    assert "59.0" in [v["version"] for v in versions]
    resources = sf.restful("")
    assert resources["query"] == "/services/data/v59.0/query"
    assert sf.is_sandbox() is True


def build_price_book(sf: Salesforce, currency: str = "USD") -> tuple[str, str]:
    product = sf.Product2.create(
        {"Name": "Platform Seat", "ProductCode": "SEAT", "IsActive": True}
    )["id"]
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entry = sf.PricebookEntry.create(
        {
            "Pricebook2Id": standard,
            "Product2Id": product,
            "UnitPrice": 49.99,
            "IsActive": True,
            "CurrencyIsoCode": currency,
        }
    )["id"]
    return product, entry


def test_opportunity_lifecycle_derived_fields_and_rollups(sf: Salesforce):
    account = sf.Account.create({"Name": "Gamma"})["id"]
    opportunity = sf.Opportunity.create(
        {
            "Name": "Gamma - New",
            "AccountId": account,
            "StageName": "Prospecting",
            "CloseDate": "2026-12-15",
        }
    )["id"]
    record = sf.Opportunity.get(opportunity)
    assert (record["IsClosed"], record["IsWon"], record["CurrencyIsoCode"]) == (False, False, "USD")
    product, entry = build_price_book(sf)
    line = sf.OpportunityLineItem.create(
        {
            "OpportunityId": opportunity,
            "PricebookEntryId": entry,
            "Quantity": 3,
            "UnitPrice": 45.5,
            "ServiceDate": "2027-01-01",
        }
    )
    assert line["id"].startswith("00k")
    item = sf.OpportunityLineItem.get(line["id"])
    assert item["TotalPrice"] == 136.5 and item["Product2Id"] == product
    assert item["ListPrice"] == 49.99
    record = sf.Opportunity.get(opportunity)
    assert record["Amount"] == 136.5
    assert record["Pricebook2Id"] is not None
    sf.Opportunity.update(opportunity, {"StageName": "Closed Won"})
    record = sf.Opportunity.get(opportunity)
    assert (record["IsClosed"], record["IsWon"]) == (True, True)
    sf.Opportunity.update(opportunity, {"StageName": "Closed Lost"})
    assert sf.Opportunity.get(opportunity)["IsWon"] is False


def test_line_item_currency_must_match_opportunity(sf: Salesforce):
    _, entry = build_price_book(sf, "USD")
    opportunity = sf.Opportunity.create(
        {
            "Name": "Euro deal",
            "StageName": "Prospecting",
            "CloseDate": "2026-12-15",
            "CurrencyIsoCode": "EUR",
        }
    )["id"]
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.OpportunityLineItem.create(
            {
                "OpportunityId": opportunity,
                "PricebookEntryId": entry,
                "Quantity": 1,
                "UnitPrice": 10,
            }
        )
    assert error_of(excinfo)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


def test_custom_price_book_needs_standard_price(sf: Salesforce):
    product = sf.Product2.create({"Name": "Add-on", "IsActive": True})["id"]
    custom = sf.Pricebook2.create({"Name": "Partners", "IsActive": True})["id"]
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.PricebookEntry.create(
            {"Pricebook2Id": custom, "Product2Id": product, "UnitPrice": 5, "IsActive": True}
        )
    assert error_of(excinfo)["errorCode"] == "STANDARD_PRICE_NOT_DEFINED"


def test_contract_order_and_order_items(sf: Salesforce):
    account = sf.Account.create({"Name": "Delta"})["id"]
    contract = sf.Contract.create(
        {"AccountId": account, "StartDate": "2026-01-15", "ContractTerm": 12}
    )["id"]
    record = sf.Contract.get(contract)
    assert contract.startswith("800") and record["EndDate"] == "2027-01-14"
    assert record["Status"] == "Draft" and record["ContractNumber"]
    _, entry = build_price_book(sf)
    order = sf.Order.create(
        {
            "AccountId": account,
            "ContractId": contract,
            "EffectiveDate": "2026-01-15",
            "Status": "Draft",
        }
    )["id"]
    item = sf.OrderItem.create(
        {"OrderId": order, "PricebookEntryId": entry, "Quantity": 2, "UnitPrice": 49.99}
    )["id"]
    assert order.startswith("801") and item.startswith("802")
    assert sf.Order.get(order)["TotalAmount"] == 99.98


def test_relationship_by_external_id_in_body(sf: Salesforce):
    account = sf.Account.create({"Name": "Epsilon", "ERP_Customer_Number__c": "E-1"})["id"]
    opportunity = sf.Opportunity.create(
        {
            "Name": "Epsilon deal",
            "StageName": "Prospecting",
            "CloseDate": "2026-12-01",
            "Account": {"ERP_Customer_Number__c": "E-1"},
        }
    )["id"]
    assert sf.Opportunity.get(opportunity)["AccountId"] == account


def test_system_modstamp_polling_sees_writes(sf: Salesforce, http, emulator):
    before = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = sf.Account.create({"Name": "Old"})["id"]
    result = sf.query(f"SELECT Id FROM Account WHERE SystemModstamp > {before}")
    assert [r["Id"] for r in result["records"]] == [old]
    stamp = sf.Account.get(old)["SystemModstamp"]
    marker = stamp.replace("+0000", "Z")
    admin(http, emulator, "POST", "clock", {"advance_seconds": 1})
    new = sf.Account.create({"Name": "New"})["id"]
    sf.Account.update(new, {"Phone": "+49 30 1234"})
    changed = sf.query(f"SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp > {marker}")
    ids = [r["Id"] for r in changed["records"]]
    assert ids == [new]
    assert sf.Account.get(new)["SystemModstamp"] >= sf.Account.get(new)["CreatedDate"]


def test_get_updated_and_deleted(sf: Salesforce):
    start = datetime.now(UTC) - timedelta(minutes=1)
    end = datetime.now(UTC) + timedelta(minutes=1)
    kept = sf.Account.create({"Name": "Kept"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    assert sf.Account.updated(start, end)["ids"] == [kept]
    assert [d["id"] for d in sf.Account.deleted(start, end)["deletedRecords"]] == [gone]


def test_account_delete_cascades_clears_and_refuses_like_salesforce(sf: Salesforce):
    parent = sf.Account.create({"Name": "Parent"})["id"]
    child = sf.Account.create({"Name": "Child", "ParentId": parent})["id"]
    contact = sf.Contact.create({"LastName": "Doe", "AccountId": parent})["id"]
    opportunity = sf.Opportunity.create(
        {"Name": "Deal", "AccountId": parent, "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )["id"]
    assert sf.Account.delete(parent) == 204
    for gone in (sf.Contact, sf.Opportunity):
        with pytest.raises(SalesforceResourceNotFound):
            gone.get(contact if gone.name == "Contact" else opportunity)
    assert sf.Account.get(child)["ParentId"] is None
    with_contract = sf.Account.create({"Name": "Bound"})["id"]
    sf.Contract.create({"AccountId": with_contract, "StartDate": "2026-01-01", "ContractTerm": 12})
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.Account.delete(with_contract)
    assert error_of(excinfo)["errorCode"] == "DELETE_FAILED"
    assert sf.Account.get(with_contract)["IsDeleted"] is False
    children = {c["relationshipName"]: c for c in sf.Account.describe()["childRelationships"]}
    assert children["Contacts"]["cascadeDelete"] is True
    assert children["ChildAccounts"]["cascadeDelete"] is False
