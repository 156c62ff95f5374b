"""SOQL parser and evaluator, table-driven, against an in-process store (no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quote2cash.sandbox.salesforce.errors import SalesforceError
from quote2cash.sandbox.salesforce.schema import build_schema
from quote2cash.sandbox.salesforce.soql import parse
from quote2cash.sandbox.salesforce.soql_eval import QueryEngine, date_range, like_matcher
from quote2cash.sandbox.salesforce.store import Store
from quote2cash.sandbox.salesforce.values import Clock

TODAY = datetime.now(UTC).date()


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


@pytest.fixture(scope="module")
def engine() -> QueryEngine:
    store = Store(build_schema(), Clock())
    acme = store.create(
        "Account", {"Name": "Acme", "BillingCountry": "Germany", "Industry": "Technology"}
    )
    beta = store.create("Account", {"Name": "Beta", "BillingCountry": "France"})
    store.create("Account", {"Name": "100% Pure"})
    store.create("Account", {"Name": "O'Brien Ltd"})
    product = store.create("Product2", {"Name": "Seat", "IsActive": True})
    entry = store.create(
        "PricebookEntry",
        {
            "Pricebook2Id": store.standard_pricebook_id,
            "Product2Id": product,
            "UnitPrice": 10,
            "IsActive": True,
        },
    )
    big = store.create(
        "Opportunity",
        {"Name": "Acme Big", "AccountId": acme, "StageName": "Prospecting", "CloseDate": day(0)},
    )
    for quantity in (300, 200):
        store.create(
            "OpportunityLineItem",
            {
                "OpportunityId": big,
                "PricebookEntryId": entry,
                "Quantity": quantity,
                "UnitPrice": 10,
            },
        )
    store.update("Opportunity", big, {"StageName": "Closed Won"})
    store.create(
        "Opportunity",
        {
            "Name": "Acme Small",
            "AccountId": acme,
            "Amount": 100,
            "StageName": "Prospecting",
            "CloseDate": day(-10),
        },
    )
    store.create(
        "Opportunity",
        {"Name": "Beta Deal", "AccountId": beta, "StageName": "Closed Lost", "CloseDate": day(-40)},
    )
    store.create(
        "Opportunity",
        {"Name": "Orphan", "Amount": 50, "StageName": "Qualification", "CloseDate": day(5)},
    )
    return QueryEngine(store)


def names(engine: QueryEngine, soql: str) -> list[str]:
    _, records = engine.run(soql, include_deleted=False, version="59.0")
    return [r["Name"] for r in records]


OPP = "SELECT Name FROM Opportunity WHERE "


@pytest.mark.parametrize(
    "soql,expected",
    [
        ("SELECT Name FROM Account WHERE Name = 'acme'", ["Acme"]),
        ("SELECT Name FROM Account WHERE Name LIKE 'a%'", ["Acme"]),
        ("SELECT Name FROM Account WHERE Name LIKE '_eta'", ["Beta"]),
        ("SELECT Name FROM Account WHERE Name LIKE '100\\%%'", ["100% Pure"]),
        ("SELECT Name FROM Account WHERE Name LIKE '%\\_%'", []),
        ("SELECT Name FROM Account WHERE Name = 'O\\'Brien Ltd'", ["O'Brien Ltd"]),
        ("SELECT a.Name FROM Account a WHERE a.BillingCountry = 'France'", ["Beta"]),
        (OPP + "Account.BillingCountry = 'Germany' ORDER BY Name", ["Acme Big", "Acme Small"]),
        (OPP + "Account.Name = null", ["Orphan"]),
        (OPP + "Account.Industry != null", ["Acme Big", "Acme Small"]),
        (
            OPP + "StageName IN ('Closed Won', 'Closed Lost') ORDER BY Name",
            ["Acme Big", "Beta Deal"],
        ),
        (
            OPP + "StageName NOT IN ('Closed Won', 'Closed Lost') ORDER BY Name",
            ["Acme Small", "Orphan"],
        ),
        (OPP + "Amount != 100 ORDER BY Name", ["Acme Big", "Beta Deal", "Orphan"]),
        (OPP + "Amount > 99 AND Amount <= 5000 ORDER BY Name", ["Acme Big", "Acme Small"]),
        (OPP + "(Amount > 1000 OR Amount < 60) AND IsClosed = false", ["Orphan"]),
        (OPP + "NOT Name LIKE 'Acme%' ORDER BY Name", ["Beta Deal", "Orphan"]),
        (OPP + "IsWon = true", ["Acme Big"]),
        (OPP + "CloseDate = TODAY", ["Acme Big"]),
        (OPP + "CloseDate = LAST_N_DAYS:30 ORDER BY Name", ["Acme Big", "Acme Small"]),
        (OPP + "CloseDate < TODAY ORDER BY CloseDate", ["Beta Deal", "Acme Small"]),
        (OPP + "CloseDate > TODAY", ["Orphan"]),
        (OPP + "CloseDate = NEXT_N_DAYS:7", ["Orphan"]),
        (OPP + "CloseDate = N_DAYS_AGO:10", ["Acme Small"]),
        (
            OPP + f"CloseDate >= {day(-10)} AND CloseDate <= {day(0)} ORDER BY Name",
            ["Acme Big", "Acme Small"],
        ),
        (OPP + "CreatedDate = TODAY AND Name = 'Orphan'", ["Orphan"]),
        (OPP + "CreatedDate < YESTERDAY", []),
        (OPP + "LastModifiedDate > 2000-01-01T00:00:00Z AND Name = 'Orphan'", ["Orphan"]),
        (OPP + "SystemModstamp > 2999-01-01T00:00:00+01:00", []),
        (
            "SELECT Name FROM Opportunity ORDER BY Amount DESC NULLS LAST, Name",
            ["Acme Big", "Acme Small", "Orphan", "Beta Deal"],
        ),
        (
            "SELECT Name FROM Opportunity ORDER BY Amount ASC",
            ["Beta Deal", "Orphan", "Acme Small", "Acme Big"],
        ),
        (
            "SELECT Name FROM Opportunity ORDER BY Amount NULLS LAST LIMIT 2 OFFSET 1",
            ["Acme Small", "Acme Big"],
        ),
        (
            "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Opportunity "
            "WHERE IsWon = true)",
            ["Acme"],
        ),
        (
            "SELECT Name FROM Account WHERE Id NOT IN (SELECT AccountId FROM Opportunity) "
            "ORDER BY Name",
            ["100% Pure", "O'Brien Ltd"],
        ),
    ],
)
def test_filters_and_ordering(engine: QueryEngine, soql: str, expected: list[str]):
    assert names(engine, soql) == expected


def test_fields_macro_expands_to_fields(engine: QueryEngine):
    _, rows = engine.run(
        "SELECT FIELDS(CUSTOM) FROM Account WHERE Name = 'Acme' LIMIT 1",
        include_deleted=False,
        version="59.0",
    )
    assert "ERP_Customer_Number__c" in rows[0] and "Name" not in rows[0]
    _, rows = engine.run(
        "SELECT FIELDS(STANDARD) FROM Account WHERE Name = 'Acme'",
        include_deleted=False,
        version="59.0",
    )
    assert rows[0]["Name"] == "Acme" and "ERP_Customer_Number__c" not in rows[0]


def test_count_returns_total_only(engine: QueryEngine):
    total, records = engine.run(
        "SELECT COUNT() FROM Opportunity WHERE IsClosed = true",
        include_deleted=False,
        version="59.0",
    )
    assert (total, records) == (2, [])


def test_aggregate_functions(engine: QueryEngine):
    _, records = engine.run(
        "SELECT SUM(Amount), COUNT(Id), MAX(CloseDate) FROM Opportunity",
        include_deleted=False,
        version="59.0",
    )
    assert records[0]["expr0"] == Decimal("5150.00")
    assert records[0]["expr1"] == 4 and records[0]["expr2"] == day(5)


def test_group_by_with_aliases_and_ordering(engine: QueryEngine):
    _, rows = engine.run(
        "SELECT IsClosed, COUNT(Id) n, SUM(Amount), MAX(CloseDate) FROM Opportunity "
        "GROUP BY IsClosed ORDER BY IsClosed DESC",
        include_deleted=False,
        version="59.0",
    )
    assert rows == [
        {
            "attributes": {"type": "AggregateResult"},
            "IsClosed": True,
            "n": 2,
            "expr0": Decimal("5000.00"),
            "expr1": day(0),
        },
        {
            "attributes": {"type": "AggregateResult"},
            "IsClosed": False,
            "n": 2,
            "expr0": Decimal("150.00"),
            "expr1": day(5),
        },
    ]
    _, rows = engine.run(
        "SELECT Account.Name, COUNT(Id) FROM Opportunity WHERE AccountId != null "
        "GROUP BY Account.Name ORDER BY Account.Name LIMIT 1",
        include_deleted=False,
        version="59.0",
    )
    assert rows == [{"attributes": {"type": "AggregateResult"}, "Name": "Acme", "expr0": 2}]


def test_parent_and_child_relationships(engine: QueryEngine):
    _, rows = engine.run(
        "SELECT Name, Amount, Account.Name, (SELECT Quantity, TotalPrice FROM "
        "OpportunityLineItems ORDER BY Quantity) FROM Opportunity WHERE Name = 'Acme Big'",
        include_deleted=False,
        version="59.0",
    )
    row = rows[0]
    assert row["Amount"] == Decimal("5000.00")
    assert row["Account"]["Name"] == "Acme"
    lines = row["OpportunityLineItems"]
    assert (lines["totalSize"], lines["done"]) == (2, True)
    assert [r["Quantity"] for r in lines["records"]] == [Decimal("200.00"), Decimal("300.00")]
    assert lines["records"][0]["attributes"]["type"] == "OpportunityLineItem"
    _, rows = engine.run(
        "SELECT Opportunity.Account.BillingCountry, Product2.Name FROM OpportunityLineItem",
        include_deleted=False,
        version="59.0",
    )
    assert {r["Opportunity"]["Account"]["BillingCountry"] for r in rows} == {"Germany"}
    assert rows[0]["Product2"]["Name"] == "Seat"
    _, rows = engine.run(
        "SELECT Name, (SELECT Id FROM Opportunities) FROM Account WHERE Name = 'O\\'Brien Ltd'",
        include_deleted=False,
        version="59.0",
    )
    assert rows[0]["Opportunities"] is None


@pytest.mark.parametrize(
    "soql,code,at",
    [
        ("SELECT FROM Account", "MALFORMED_QUERY", "FROM"),
        (
            "SELECT Id FROM Account WHERE Name = 'x' AND Name = 'y' OR Name = 'z'",
            "MALFORMED_QUERY",
            "OR",
        ),
        ("SELECT Id FROM Account WHERE Name = 'open", "MALFORMED_QUERY", "'open"),
        ("SELECT Id FROM Account WHERE Name = 'a' extra", "MALFORMED_QUERY", "extra"),
        ("SELECT Id FROM Account LIMIT -1", "MALFORMED_QUERY", "-1"),
        ("SELECT Id FROM Account WHERE Name LIKE 5", "MALFORMED_QUERY", "5"),
        ("SELECT Id FROM Account WHERE AnnualRevenue > '5'", "MALFORMED_QUERY", "'5'"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2026-01-01", "MALFORMED_QUERY", "2026"),
        ("SELECT Id FROM Account WHERE Name = 5", "MALFORMED_QUERY", "5"),
        ("SELECT Id FROM Account WHERE Name = 'a' AND", "MALFORMED_QUERY", None),
        ("SELECT Bogus FROM Account", "INVALID_FIELD", "Bogus"),
        ("SELECT Id FROM Account WHERE Foo.Name = 'x'", "INVALID_FIELD", "Foo"),
        ("SELECT Id FROM Bogus__c", "INVALID_TYPE", "Bogus__c"),
        ("SELECT Id, (SELECT Id FROM Nothing) FROM Account", "INVALID_TYPE", "Nothing"),
        ("SELECT Id FROM Account WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR", "'nope'"),
        ("SELECT FIELDS(ALL) FROM Account", "MALFORMED_QUERY", "FIELDS"),
        ("SELECT Id FROM Account OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "Account"),
        ("SELECT Id FROM Account GROUP BY Name", "MALFORMED_QUERY", "Id"),
        ("SELECT Name, COUNT(Id) FROM Account", "MALFORMED_QUERY", "Name"),
        (
            "SELECT Name FROM Account GROUP BY Name HAVING COUNT(Id) > 1",
            "MALFORMED_QUERY",
            "HAVING",
        ),
    ],
)
def test_errors_name_code_and_position(engine: QueryEngine, soql: str, code: str, at: str | None):
    with pytest.raises(SalesforceError) as excinfo:
        engine.run(soql, include_deleted=False, version="59.0")
    assert excinfo.value.status == 400
    assert excinfo.value.error_code == code
    column = len(soql) + 1 if at is None else soql.index(at) + 1
    assert f"ERROR at Row:1:Column:{column}\n" in excinfo.value.message
    assert excinfo.value.message.split("\n")[2] == " " * (column - 1) + "^"


def test_parser_keeps_string_escapes_and_literals():
    query = parse(
        "SELECT Id FROM Account WHERE Name = 'a\\nb\\\\c' AND Amount > -1.50 "
        "AND CloseDate = LAST_N_MONTHS:3 AND IsDeleted = FALSE"
    )
    items = query.where.items  # type: ignore[union-attr]
    assert items[0].value.value == "a\nb\\c"
    assert items[1].value.value == Decimal("-1.50")
    assert (items[2].value.value, items[2].value.n) == ("last_n_months", 3)
    assert items[3].value.value is False


@pytest.mark.parametrize(
    "literal,n,today,expected",
    [
        ("this_month", None, "2026-11-26", ("2026-11-01", "2026-12-01")),
        ("last_month", None, "2026-01-15", ("2025-12-01", "2026-01-01")),
        ("this_quarter", None, "2026-11-26", ("2026-10-01", "2027-01-01")),
        ("this_week", None, "2026-11-26", ("2026-11-22", "2026-11-29")),
        ("last_n_days", 7, "2026-11-26", ("2026-11-19", "2026-11-27")),
        ("next_n_months", 2, "2026-11-26", ("2026-12-01", "2027-02-01")),
        ("this_year", None, "2026-11-26", ("2026-01-01", "2027-01-01")),
    ],
)
def test_date_literal_ranges(literal, n, today, expected):
    from datetime import date

    start, end = date_range(literal, n, date.fromisoformat(today))
    assert (start.isoformat(), end.isoformat()) == expected


def test_like_matcher_is_case_insensitive_and_anchored():
    matches = like_matcher("ac_e%")
    assert matches("ACME corp") and matches("acne")
    assert not matches("xacme") and not matches("ace")


def test_reserved_words_as_object_and_relationship_names():
    store = Store(build_schema(), Clock())
    account = store.create("Account", {"Name": "Acme"})
    product = store.create("Product2", {"Name": "Seat", "IsActive": True})
    entry = store.create(
        "PricebookEntry",
        {
            "Pricebook2Id": store.standard_pricebook_id,
            "Product2Id": product,
            "UnitPrice": 1,
            "IsActive": True,
        },
    )
    order = store.create("Order", {"AccountId": account, "EffectiveDate": "2026-01-01"})
    store.create(
        "OrderItem", {"OrderId": order, "PricebookEntryId": entry, "Quantity": 3, "UnitPrice": 2}
    )
    engine = QueryEngine(store)
    _, rows = engine.run(
        "SELECT Id, Order.OrderNumber FROM OrderItem WHERE Order.Status = 'Draft' "
        "ORDER BY Order.OrderNumber",
        include_deleted=False,
        version="59.0",
    )
    assert rows[0]["Order"]["OrderNumber"] == store.get("Order", order)["OrderNumber"]
    _, rows = engine.run(
        "SELECT TotalAmount, (SELECT Quantity FROM OrderItems) FROM Order ORDER BY OrderNumber",
        include_deleted=False,
        version="59.0",
    )
    assert rows[0]["TotalAmount"] == Decimal("6.00")
    assert rows[0]["OrderItems"]["totalSize"] == 1


def test_fifteen_character_ids_match_in_filters():
    store = Store(build_schema(), Clock())
    account = store.create("Account", {"Name": "Acme"})
    store.create("Contact", {"LastName": "Doe", "AccountId": account[:15]})
    engine = QueryEngine(store)
    _, rows = engine.run(
        f"SELECT LastName FROM Contact WHERE AccountId = '{account[:15]}'",
        include_deleted=False,
        version="59.0",
    )
    assert [r["LastName"] for r in rows] == ["Doe"]
    _, rows = engine.run(
        f"SELECT LastName FROM Contact WHERE AccountId IN ('{account}')",
        include_deleted=False,
        version="59.0",
    )
    assert len(rows) == 1


_VOCABULARY = [
    "SELECT",
    "Id",
    "Name",
    ",",
    "FROM",
    "Account",
    "Opportunity",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "(",
    ")",
    "=",
    "!=",
    "<",
    ">=",
    "LIKE",
    "IN",
    "'x%'",
    "'it\\'s'",
    "5",
    "-2.5",
    "null",
    "true",
    "TODAY",
    "LAST_N_DAYS",
    ":",
    "3",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "ORDER",
    "BY",
    "DESC",
    "NULLS",
    "LAST",
    "LIMIT",
    "OFFSET",
    "COUNT()",
    ".",
    "Account.Name",
    "(SELECT Id FROM Opportunities)",
    "'",
    "\\",
    "@",
    "AnnualRevenue",
    "IsDeleted",
    "GROUP",
    "COUNT(Id)",
    "SUM(AnnualRevenue)",
    "total",
    "FIELDS(ALL)",
    "Order",
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.sampled_from(_VOCABULARY), max_size=14) | st.text(max_size=40).map(lambda t: [t])
)
def test_any_input_parses_or_fails_as_salesforce_error(engine: QueryEngine, words: list[str]):
    """No input makes the parser or evaluator fail with anything but a Salesforce error."""
    try:
        engine.run(" ".join(words), include_deleted=False, version="59.0")
    except SalesforceError as exc:
        assert exc.status == 400
        assert exc.error_code in {
            "MALFORMED_QUERY",
            "INVALID_FIELD",
            "INVALID_TYPE",
            "INVALID_QUERY_FILTER_OPERATOR",
        }
