"""Write validation against the store directly: arbitrary JSON never escapes as a crash."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from quote2cash.sandbox.salesforce.errors import SalesforceError
from quote2cash.sandbox.salesforce.schema import build_schema
from quote2cash.sandbox.salesforce.store import Store
from quote2cash.sandbox.salesforce.values import Clock

SCHEMA = build_schema()
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=5), inner, max_size=2)
    ),
    max_leaves=4,
)
opportunity_fields = st.sampled_from([*SCHEMA.objects["Opportunity"].fields, "Account", "Bogus"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(opportunity_fields, json_values, max_size=6))
def test_create_accepts_or_refuses_with_salesforce_errors(body):
    store = Store(SCHEMA, Clock())
    before = len(store.tables["Opportunity"])
    try:
        record_id = store.create("Opportunity", body)
    except SalesforceError as exc:
        assert exc.status in (400, 404)
        assert exc.error_code.isupper()
        assert len(store.tables["Opportunity"]) == before
    else:
        record = store.get("Opportunity", record_id)
        assert record["Name"] and record["StageName"] and record["CloseDate"]
        assert record["IsWon"] == (record["StageName"] == "Closed Won")
        assert record["Amount"] is None or isinstance(record["Amount"], Decimal)


def test_failed_write_inside_transaction_rolls_back_everything():
    store = Store(SCHEMA, Clock())
    account = store.create("Account", {"Name": "Keep", "ERP_Customer_Number__c": "K-1"})
    try:
        with store.transaction():
            store.update("Account", account, {"Name": "Changed"})
            store.create("Account", {"Name": "Added", "Hub_Global_Id__c": "H-1"})
            store.delete("Account", account)
            store.create("Account", {"Name": "Broken", "Bogus__c": 1})
    except SalesforceError:
        pass
    assert store.get("Account", account)["Name"] == "Keep"
    assert [r["Name"] for r in store.records("Account")] == ["Keep"]
    obj = SCHEMA.objects["Account"]
    assert store.find_by_external_id(obj, obj.fields["Hub_Global_Id__c"], "H-1") == []
    assert len(store.find_by_external_id(obj, obj.fields["ERP_Customer_Number__c"], "k-1")) == 1
