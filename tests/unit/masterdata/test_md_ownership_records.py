"""Ownership applied to whole records (``reconcile_owned``): per field class, what a CRM edit
propagates, what it may not, and how the refusal names the record, field and both values."""

from __future__ import annotations

import pytest

from quote2cash.canonical import Address, Customer, Money, Ref
from quote2cash.masterdata.ownership import (
    VIOLATION_EVENT,
    load_ownership,
    reconcile_owned,
    shown_value,
)
from unit.masterdata.accounts_data import CONFIG

OWNERSHIP = load_ownership(CONFIG / "ownership.yaml")
HOME = Address(line1="Hauptstraße 1", city="Stuttgart", postal_code="70173", country="DE")
MOVED = Address(line1="Königstraße 9", city="Stuttgart", postal_code="70173", country="DE")


def crm_account(**changes: object) -> Customer:
    """An account as the CRM connector maps it: these fields are set, others are not."""
    values: dict[str, object] = {
        "external_ids": {"crm": "001A"},
        "name": "Müller GmbH",
        "email": "ap@mueller.example",
        "phone": "+49 711 1",
        "address": HOME,
        "tax_ids": (("eu_vat", "DE123456789"),),
        "currency": "EUR",
        "legal_entity": Ref.external("crm", "DE"),
    }
    values.update(changes)
    return Customer.model_validate(values)


def erp_customer(**changes: object) -> Customer:
    """The ERP's customer: name, address and tax ids carried; the legal entity added by the
    hub from its decision, as the flow does."""
    values: dict[str, object] = {
        "external_ids": {"erp": "12"},
        "name": "Müller GmbH",
        "address": HOME,
        "tax_ids": (("eu_vat", "DE 123 456 789"),),
        "legal_entity": Ref(global_id="DE"),
        "credit_limit": Money("10000.00", "EUR"),
    }
    values.update(changes)
    return Customer.model_validate(values)


CLASSES = [
    # (field, CRM value, propagated?)
    ("name", "Müller Maschinenbau GmbH", True),
    ("phone", "+49 711 2", True),
    ("email", "billing@mueller.example", True),
    ("address", MOVED, True),
    ("tax_ids", (("eu_vat", "DE999999999"),), False),
    ("legal_entity", Ref.external("crm", "US"), False),
    ("credit_limit", Money("50000", "EUR"), False),
]


@pytest.mark.parametrize(("field", "value", "propagates"), CLASSES)
def test_a_crm_edit_propagates_only_for_crm_owned_fields(
    field: str, value: object, propagates: bool
) -> None:
    sent = crm_account(**{field: value})
    owned = reconcile_owned(
        OWNERSHIP, "customer", "crm", sent, {"erp": erp_customer()}, record="account 001A"
    )
    kept = getattr(owned.record, field)
    if propagates:
        assert kept == getattr(sent, field)
        assert field in owned.propagated and owned.conflicts == ()
    else:
        assert kept == getattr(erp_customer(), field)
        assert field not in owned.propagated
        [conflict] = owned.conflicts
        assert (conflict.field, conflict.owner, conflict.source_system) == (field, "erp", "crm")
        assert conflict.sent == shown_value(getattr(sent, field)) != conflict.held
        assert "account 001A" in conflict.message and repr(field) in conflict.message
        assert repr(conflict.sent) in conflict.message and repr(conflict.held) in conflict.message


def test_an_unchanged_erp_owned_value_is_no_conflict_even_if_spelled_differently() -> None:
    owned = reconcile_owned(
        OWNERSHIP, "customer", "crm", crm_account(), {"erp": erp_customer()}, record="a"
    )
    assert owned.conflicts == ()
    assert owned.record.tax_ids == erp_customer().tax_ids


def test_clearing_an_erp_owned_field_in_the_crm_is_refused() -> None:
    owned = reconcile_owned(
        OWNERSHIP, "customer", "crm", crm_account(tax_ids=()), {"erp": erp_customer()}, record="a"
    )
    [conflict] = owned.conflicts
    assert (conflict.sent, conflict.held) == (None, "DE123456789")
    assert "(empty)" in conflict.message


def test_a_field_the_owner_does_not_carry_is_left_to_the_flow() -> None:
    """The ERP has no currency on its customer: no conflict, not propagated either."""
    owned = reconcile_owned(
        OWNERSHIP,
        "customer",
        "crm",
        crm_account(currency="USD"),
        {"erp": erp_customer()},
        record="a",
    )
    assert owned.conflicts == () and "currency" not in owned.propagated


def test_without_the_owner_record_nothing_is_compared() -> None:
    owned = reconcile_owned(OWNERSHIP, "customer", "crm", crm_account(tax_ids=()), {}, record="a")
    assert owned.conflicts == ()
    assert set(owned.propagated) == {"address", "email", "name", "phone"}


def test_conflict_payload_is_a_violation_event_with_both_values() -> None:
    owned = reconcile_owned(
        OWNERSHIP,
        "customer",
        "crm",
        crm_account(tax_ids=(("eu_vat", "DE999999999"),)),
        {"erp": erp_customer()},
        record="account 001A",
    )
    [conflict] = owned.conflicts
    payload = conflict.event_payload("CUS-1")
    assert payload["entity_id"] == "CUS-1" and payload["field"] == "tax_ids"
    assert (payload["sent"], payload["held"]) == ("DE999999999", "DE123456789")
    assert payload["owner"] == "erp" and payload["reason"] == conflict.message
    assert VIOLATION_EVENT == "masterdata.ownership.violated"


def test_ids_are_never_owned_fields() -> None:
    sent = crm_account(external_ids={"crm": "001A", "erp": "99"}, global_id="CUS-2")
    owned = reconcile_owned(OWNERSHIP, "customer", "crm", sent, {"erp": erp_customer()}, record="a")
    assert owned.conflicts == () and "external_ids" not in owned.propagated


def test_a_crm_showing_part_of_the_erps_tax_ids_is_no_conflict() -> None:
    """A CRM with one VAT field shows one of the ERP's registrations: nothing differs; one the
    ERP does not hold does."""
    two = erp_customer(tax_ids=(("eu_vat", "DE123456789"), ("us_ein", "04-2103594")))
    shown = reconcile_owned(OWNERSHIP, "customer", "crm", crm_account(), {"erp": two}, record="a")
    assert shown.conflicts == () and shown.record.tax_ids == two.tax_ids
    extra = crm_account(tax_ids=(("eu_vat", "DE123456789"), ("eu_vat", "DE999999999")))
    other = reconcile_owned(OWNERSHIP, "customer", "crm", extra, {"erp": two}, record="a")
    assert [c.field for c in other.conflicts] == ["tax_ids"]


def test_the_same_credit_limit_written_otherwise_is_no_conflict() -> None:
    sent = crm_account(credit_limit=Money("10000", "EUR"))
    owned = reconcile_owned(OWNERSHIP, "customer", "crm", sent, {"erp": erp_customer()}, record="a")
    assert owned.conflicts == ()
