"""Queries through simple-salesforce: paging with nextRecordsUrl, query_more, queryAll."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from .conftest import admin


def create_accounts(sf: Salesforce, count: int, prefix: str = "Acct") -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 200):
        records = [
            {"attributes": {"type": "Account"}, "Name": f"{prefix} {n:04d}", "NumberOfEmployees": n}
            for n in range(start, min(start + 200, count))
        ]
        results = sf.restful(
            "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
        )
        assert all(r["success"] for r in results)
        ids += [r["id"] for r in results]
    return ids


def test_query_all_pages_over_batch_size(sf: Salesforce, http, emulator):
    admin(http, emulator, "PATCH", "config", {"query_batch_size": 100})
    ids = create_accounts(sf, 250)
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name")
    assert first["totalSize"] == 250 and first["done"] is False
    assert len(first["records"]) == 100
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert len(second["records"]) == 100 and second["done"] is False
    locator = second["nextRecordsUrl"].rsplit("/", 1)[1]
    third = sf.query_more(locator)
    assert len(third["records"]) == 50 and third["done"] is True
    assert "nextRecordsUrl" not in third
    everything = sf.query_all("SELECT Id, Name FROM Account ORDER BY Name")
    assert everything["totalSize"] == 250
    assert sorted(r["Id"] for r in everything["records"]) == sorted(ids)
    names = [r["Name"] for r in everything["records"]]
    assert names == sorted(names)


def test_default_batch_is_2000_and_header_can_lower_it(sf: Salesforce):
    create_accounts(sf, 450)
    assert sf.query("SELECT Id FROM Account")["done"] is True
    paged = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=200"})
    assert len(paged["records"]) == 200 and paged["done"] is False
    assert (
        len(
            sf.query_all(
                "SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=200"}
            )["records"]
        )
        == 450
    )


def test_invalid_query_locator(sf: Salesforce):
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.query_more("01gNOPE0000000000-200")
    assert excinfo.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_shapes_parent_and_child_results(sf: Salesforce):
    parent = sf.Account.create({"Name": "Parent", "BillingCountry": "Germany"})["id"]
    orphan_opp = sf.Opportunity.create(
        {"Name": "No account", "StageName": "Prospecting", "CloseDate": "2026-10-01"}
    )["id"]
    with_account = sf.Opportunity.create(
        {
            "Name": "With account",
            "AccountId": parent,
            "StageName": "Prospecting",
            "CloseDate": "2026-10-01",
        }
    )["id"]
    rows = sf.query(
        "SELECT Id, Account.Name, Account.BillingCountry FROM Opportunity ORDER BY Name"
    )["records"]
    by_id = {r["Id"]: r for r in rows}
    assert by_id[orphan_opp]["Account"] is None
    nested = by_id[with_account]["Account"]
    assert nested["attributes"]["type"] == "Account"
    assert (nested["Name"], nested["BillingCountry"]) == ("Parent", "Germany")
    accounts = sf.query("SELECT Name, (SELECT Name FROM Opportunities ORDER BY Name) FROM Account")[
        "records"
    ]
    assert accounts[0]["Opportunities"]["totalSize"] == 1
    assert accounts[0]["Opportunities"]["done"] is True
    assert accounts[0]["Opportunities"]["records"][0]["Name"] == "With account"
    sf.Account.create({"Name": "Lonely"})
    lonely = sf.query(
        "SELECT Name, (SELECT Id FROM Opportunities) FROM Account WHERE Name = 'lonely'"
    )["records"][0]
    assert lonely["Opportunities"] is None


def test_query_errors_map_to_malformed_request(sf: Salesforce):
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.query("SELECT Id FROM Account WHERE Name = ")
    error = excinfo.value.content[0]
    assert error["errorCode"] == "MALFORMED_QUERY"
    assert "Row:1:Column:37" in error["message"]
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.query("SELECT Nope__c FROM Account")
    assert excinfo.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.query("SELECT Id FROM Nope__c")
    assert excinfo.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_query_all_sees_deleted_records_only_when_asked(sf: Salesforce):
    keep = sf.Account.create({"Name": "Keep"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    assert [r["Id"] for r in sf.query_all("SELECT Id FROM Account")["records"]] == [keep]
    with_deleted = sf.query_all(
        "SELECT Id FROM Account WHERE IsDeleted = true", include_deleted=True
    )
    assert [r["Id"] for r in with_deleted["records"]] == [gone]
