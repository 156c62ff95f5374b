"""sObject Collections and the composite resource, including allOrNone rollback."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest


def account(name: str, **fields: object) -> dict:
    return {"attributes": {"type": "Account"}, "Name": name, **fields}


def count(sf: Salesforce, soql: str = "SELECT COUNT() FROM Account") -> int:
    return int(sf.query(soql)["totalSize"])


def test_collection_create_partial_success(sf: Salesforce):
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                account("One"),
                {"attributes": {"type": "Account"}, "Phone": "1"},
                {"attributes": {"type": "Contact"}, "LastName": "Doe"},
            ],
        },
    )
    assert [r["success"] for r in results] == [True, False, True]
    assert results[0]["id"].startswith("001") and results[2]["id"].startswith("003")
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert results[1]["errors"][0]["fields"] == ["Name"]
    assert count(sf) == 1


def test_collection_create_all_or_none_rolls_back(sf: Salesforce):
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [account("One"), account("Two", Bogus__c=1), account("Three")],
        },
    )
    assert [r["success"] for r in results] == [False, False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert count(sf) == 0


def test_collection_update_upsert_delete(sf: Salesforce):
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": [account("A", ERP_Customer_Number__c="E-1"), account("B")]},
    )
    ids = [r["id"] for r in created]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "id": ids[0], "Phone": "111"},
                {"attributes": {"type": "Account"}, "id": "001000000000000AAA", "Phone": "x"},
            ],
        },
    )
    assert [r["success"] for r in updated] == [True, False]
    assert sf.Account.get(ids[0])["Phone"] == "111"
    upserted = sf.restful(
        "composite/sobjects/Account/ERP_Customer_Number__c",
        method="PATCH",
        json={
            "allOrNone": True,
            "records": [
                account("A2", ERP_Customer_Number__c="E-1"),
                account("C", ERP_Customer_Number__c="E-2"),
            ],
        },
    )
    assert [(r["success"], r["created"]) for r in upserted] == [(True, False), (True, True)]
    assert upserted[0]["id"] == ids[0] and sf.Account.get(ids[0])["Name"] == "A2"
    fetched = sf.restful(
        "composite/sobjects/Account", params={"ids": ",".join(ids), "fields": "Id,Name"}
    )
    assert [r["Name"] for r in fetched] == ["A2", "B"]
    deleted = sf.restful(
        "composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"}
    )
    assert [r["success"] for r in deleted] == [True, True]
    assert count(sf) == 1


def test_collection_limit_is_200(sf: Salesforce):
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.restful(
            "composite/sobjects",
            method="POST",
            json={"records": [account(f"N{i}") for i in range(201)]},
        )
    assert excinfo.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_composite_with_references(sf: Salesforce):
    response = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "newAccount",
                    "body": {"Name": "Composite Co"},
                },
                {
                    "method": "GET",
                    "url": "/services/data/v59.0/sobjects/Account/@{newAccount.id}",
                    "referenceId": "readBack",
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Opportunity",
                    "referenceId": "newOpp",
                    "body": {
                        "Name": "@{readBack.Name} - New",
                        "AccountId": "@{newAccount.id}",
                        "StageName": "Prospecting",
                        "CloseDate": "2026-11-30",
                    },
                },
                {
                    "method": "GET",
                    "referenceId": "q",
                    "url": "/services/data/v59.0/query?q=SELECT+Name,Account.Name+FROM+Opportunity",
                },
            ],
        },
    )["compositeResponse"]
    assert [r["httpStatusCode"] for r in response] == [201, 200, 201, 200]
    assert [r["referenceId"] for r in response] == ["newAccount", "readBack", "newOpp", "q"]
    assert response[0]["httpHeaders"]["Location"].endswith(response[0]["body"]["id"])
    record = response[3]["body"]["records"][0]
    assert record["Name"] == "Composite Co - New"
    assert record["Account"]["Name"] == "Composite Co"


def test_composite_all_or_none_rolls_back_everything(sf: Salesforce):
    response = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "ok",
                    "body": {"Name": "Survives?"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "bad",
                    "body": {"Website": "missing name"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "never",
                    "body": {"Name": "Never"},
                },
            ],
        },
    )["compositeResponse"]
    assert [r["httpStatusCode"] for r in response] == [400, 400, 400]
    assert response[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert response[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert response[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert count(sf) == 0


def test_composite_without_all_or_none_keeps_successes(sf: Salesforce):
    response = sf.restful(
        "composite",
        method="POST",
        json={
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "bad",
                    "body": {"Website": "missing name"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Contact",
                    "referenceId": "dependent",
                    "body": {"LastName": "X", "AccountId": "@{bad.id}"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Account",
                    "referenceId": "ok",
                    "body": {"Name": "Kept"},
                },
            ]
        },
    )["compositeResponse"]
    assert [r["httpStatusCode"] for r in response] == [400, 400, 201]
    assert response[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert count(sf) == 1


def test_composite_limit_is_25_subrequests(sf: Salesforce):
    requests_ = [
        {"method": "GET", "url": "/services/data/v59.0/limits", "referenceId": f"r{i}"}
        for i in range(26)
    ]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite", method="POST", json={"compositeRequest": requests_})


def test_composite_reference_into_query_records(sf: Salesforce):
    sf.Account.create({"Name": "Target", "ERP_Customer_Number__c": "T-1"})
    response = sf.restful(
        "composite",
        method="POST",
        json={
            "compositeRequest": [
                {
                    "method": "GET",
                    "referenceId": "found",
                    "url": "/services/data/v59.0/query?q="
                    "SELECT+Id+FROM+Account+WHERE+Name='Target'",
                },
                {
                    "method": "PATCH",
                    "referenceId": "touch",
                    "url": "/services/data/v59.0/sobjects/Account/@{found.records[0].Id}",
                    "body": {"Phone": "+1 555 0100"},
                },
                {
                    "method": "PATCH",
                    "referenceId": "byExternalId",
                    "url": "/services/data/v59.0/sobjects/Account/ERP_Customer_Number__c/T-2",
                    "body": {"Name": "Second", "ParentId": "@{found.records[0].Id}"},
                },
            ]
        },
    )["compositeResponse"]
    assert [r["httpStatusCode"] for r in response] == [200, 204, 201]
    assert response[2]["body"]["created"] is True
    child = sf.Account.get_by_custom_id("ERP_Customer_Number__c", "T-2")
    parent = sf.Account.get_by_custom_id("ERP_Customer_Number__c", "T-1")
    assert child["ParentId"] == parent["Id"] and parent["Phone"] == "+1 555 0100"


@pytest.mark.parametrize("outer", [True, False])
def test_composite_all_or_none_overrides_collection_flag(sf: Salesforce, outer: bool):
    response = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": outer,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/composite/sobjects",
                    "referenceId": "newAccounts",
                    "body": {
                        "allOrNone": False,
                        "records": [account("Fine"), account("Bad", Nope=1)],
                    },
                },
                {
                    "method": "POST",
                    "url": "/services/data/v59.0/sobjects/Contact",
                    "referenceId": "newContact",
                    "body": {"LastName": "Smith"},
                },
            ],
        },
    )["compositeResponse"]
    if outer:
        assert [r["httpStatusCode"] for r in response] == [200, 400]
        assert response[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
        assert count(sf) == 0 and count(sf, "SELECT COUNT() FROM Contact") == 0
    else:
        assert [r["httpStatusCode"] for r in response] == [200, 201]
        assert [r["success"] for r in response[0]["body"]] == [True, False]
        assert count(sf) == 1 and count(sf, "SELECT COUNT() FROM Contact") == 1
