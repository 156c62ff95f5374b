"""Field ownership: one function decides what propagates; table-driven."""

from __future__ import annotations

import pytest

from quote2cash.engine.errors import MappingError
from quote2cash.engine.events import validate_envelope
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.ownership import (
    VIOLATION_EVENT,
    check_change,
    load_ownership,
    parse_ownership,
)
from unit.masterdata.accounts_data import CONFIG

OWNERSHIP = load_ownership(CONFIG / "ownership.yaml")

CASES = [
    # (entity, source, changed fields, propagate, violations)
    ("customer", "crm", ["name", "phone"], ["name", "phone"], []),
    ("customer", "crm", ["name", "tax_ids", "legal_entity"], ["name"], ["tax_ids", "legal_entity"]),
    (
        "customer",
        "crm",
        ["credit_limit", "currency", "billing_address"],
        [],
        ["credit_limit", "currency", "billing_address"],
    ),
    (
        "customer",
        "erp",
        ["tax_ids", "tax_exemption", "name"],
        ["tax_ids", "tax_exemption"],
        ["name"],
    ),
    ("customer", "billing", ["email"], ["email"], []),
    ("customer", "crm", ["email", "email"], ["email"], []),
    ("customer", "crm", ["some_custom_field"], ["some_custom_field"], []),
    ("customer", "erp", ["some_custom_field"], [], ["some_custom_field"]),
    ("subscription", "crm", ["quantity"], [], ["quantity"]),
    ("subscription", "billing", ["quantity", "status"], ["quantity", "status"], []),
    ("product", "crm", ["name"], [], ["name"]),
    ("invoice", "erp", ["ar_posting", "status"], ["ar_posting"], ["status"]),
    (
        "customer",
        "crm",
        ["address.city", "billing_address.postal_code"],
        ["address.city"],
        ["billing_address.postal_code"],
    ),
]


@pytest.mark.parametrize(("entity", "source", "changed", "propagate", "violations"), CASES)
def test_ownership_decides_what_propagates(
    entity: str, source: str, changed: list[str], propagate: list[str], violations: list[str]
) -> None:
    decision = check_change(OWNERSHIP, entity, source, changed)
    assert list(decision.propagate) == propagate
    assert [v.field for v in decision.violations] == violations
    assert decision.ok is (not violations)
    events = decision.warning_events("CUS-1")
    assert [e["type"] for e in events] == [VIOLATION_EVENT] * len(violations)
    for event, field in zip(events, violations, strict=True):
        assert event["data"]["entity"] == entity
        assert event["data"]["entity_id"] == "CUS-1"
        assert event["data"]["field"] == field
        assert event["data"]["source_system"] == source
        assert event["data"]["owner"] == OWNERSHIP.owner_of(entity, field)
        assert event["data"]["owner"] != source


def test_allowed_values_drop_the_refused_fields() -> None:
    decision = check_change(OWNERSHIP, "customer", "crm", ["name", "tax_ids"])
    assert decision.allowed_values({"name": "Acme", "tax_ids": [("eu_vat", "DE1")]}) == {
        "name": "Acme"
    }


def test_financial_fields_are_owned_by_the_erp() -> None:
    for field in ("tax_ids", "tax_exemption", "legal_entity", "currency", "credit_limit"):
        assert OWNERSHIP.owner_of("customer", field) == "erp"


def test_violations_become_engine_events_in_the_change_correlation() -> None:
    decision = check_change(OWNERSHIP, "customer", "crm", ["name", "tax_ids", "currency"])
    events = decision.events(
        "CUS-7", correlation_id="corr-1", causation_id="evt-1", entity_id="CUS-7"
    )
    assert [(e.type, e.subject, e.correlation_id, e.causation_id) for e in events] == [
        (VIOLATION_EVENT, "CUS-7", "corr-1", "evt-1")
    ] * 2
    assert [e.data["field"] for e in events] == ["tax_ids", "currency"]
    for event in events:
        validate_envelope(event)


def test_unknown_entity_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="no ownership rules for entity 'widget'"):
        check_change(OWNERSHIP, "widget", "crm", ["name"])


def test_a_field_nobody_owns_is_never_propagated() -> None:
    config = parse_ownership("entities:\n  thing:\n    fields:\n      a: crm\n")
    decision = check_change(config, "thing", "crm", ["a", "b"])
    assert decision.propagate == ("a",)
    assert decision.violations[0].field == "b" and decision.violations[0].owner is None


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        (
            "entities:\n  customer:\n    fields:\n      name: CRM\n",
            4,
            "entities.customer.fields.name",
            "should match pattern",
        ),
        (
            "entities:\n  customer:\n    fields:\n      name: []\n",
            3,
            "entities.customer.fields",
            "list of owners must not be empty",
        ),
        ("entities:\n  customer:\n    owner: crm\n", 3, "entities.customer.owner", "unknown key"),
        ("version: 1\n", 1, "entities", "required key is missing"),
        ("- just a list\n", 1, None, "expected a mapping at the top level"),
    ],
)
def test_bad_ownership_config(text: str, line: int, key: str | None, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_ownership(text, "config/ownership.yaml")
    assert caught.value.line == line
    assert caught.value.key_path == key
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"config/ownership.yaml: line {line}: ")
