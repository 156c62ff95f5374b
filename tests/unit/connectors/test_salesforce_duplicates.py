"""The Salesforce shapes of duplicate flags and merges: the flag touches no unique id field, the
merge query asks for deleted rows with a master, and a malformed merged row is a data error
naming the record, never a crash."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quote2cash.connectors.roles import DuplicateAccount
from quote2cash.connectors.salesforce import mapping
from quote2cash.engine.errors import DataError


def test_the_duplicate_flag_names_the_survivor_and_no_unique_id() -> None:
    update = mapping.duplicate_flag(
        DuplicateAccount("001000000000002AAA", "001000000000001AAA", "CUS-" + "0" * 32)
    )
    assert (update.object_type, update.external_id_field) == ("Account", "Id")
    assert update.fields == {
        "Q2C_Duplicate_Of__c": "001000000000001AAA",
        "Q2C_Merge_Status__c": "Pending Merge",
    }


def test_the_merge_query_reads_deleted_accounts_with_a_master() -> None:
    since = datetime(2026, 12, 6, 10, 30, 15, tzinfo=UTC)
    soql = mapping.merges_soql(since)
    assert "IsDeleted = true AND MasterRecordId != null" in soql
    assert "SystemModstamp >= 2026-12-06T10:30:15Z" in soql
    assert "SystemModstamp" not in mapping.merges_soql(None).split("WHERE")[1].split("ORDER")[0]


def test_a_merged_row_becomes_an_account_merge() -> None:
    merge = mapping.account_merge(
        {
            "Id": "001000000000002AAA",
            "MasterRecordId": "001000000000001AAA",
            "SystemModstamp": "2026-12-06T10:30:15.000+0000",
        }
    )
    assert merge.merged_account_id == "001000000000002AAA"
    assert merge.survivor_account_id == "001000000000001AAA"
    assert merge.merged_at == datetime(2026, 12, 6, 10, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "row",
    [
        {"Id": "001000000000002AAA", "SystemModstamp": "2026-12-06T10:30:15.000+0000"},
        {"Id": "001000000000002AAA", "MasterRecordId": "001000000000001AAA"},
        {
            "Id": "001000000000002AAA",
            "MasterRecordId": "001000000000001AAA",
            "SystemModstamp": "yesterday",
        },
    ],
)
def test_a_malformed_merged_row_is_a_data_error(row: dict[str, str]) -> None:
    with pytest.raises(DataError, match="Salesforce Account 001000000000002AAA"):
        mapping.account_merge(row)
