"""Survivorship of the golden customer record: table-driven per field, plus bad configuration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quote2cash.canonical import Address, Customer, TaxExemption
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.matching import CustomerCandidate
from quote2cash.masterdata.ownership import load_ownership
from quote2cash.masterdata.survivorship import load_survivorship, parse_survivorship
from unit.masterdata.accounts_data import CONFIG

OWNERSHIP = load_ownership(CONFIG / "ownership.yaml")
RULES = load_survivorship(CONFIG / "survivorship.yaml", OWNERSHIP)

OLD = datetime(2026, 1, 1, tzinfo=UTC)
NEW = datetime(2026, 6, 1, tzinfo=UTC)
SHORT = Address(line1="Hauptstr. 1", city="Berlin", country="DE")
FULL = Address(line1="Hauptstrasse 1", city="Berlin", postal_code="10115", state="BE", country="DE")
ERP_BILL = Address(line1="Postfach 12", city="Berlin", postal_code="10001", country="DE")


def src(system: str, local_id: str, at: datetime, **fields: object) -> CustomerCandidate:
    data: dict[str, object] = {"name": f"{system} name"} | fields
    return CustomerCandidate(system, local_id, Customer.model_validate(data), at)


CRM = src(
    "crm",
    "001A",
    NEW,
    name="Acme GmbH",
    email="new@acme.de",
    phone="+49 30 1",
    address=SHORT,
    billing_address=SHORT,
    tax_ids=[("eu_vat", "DE999")],
    currency="USD",
)
ERP = src(
    "erp",
    "C1",
    OLD,
    name="ACME GMBH",
    email="old@acme.de",
    phone="+49 30 123456",
    address=FULL,
    billing_address=ERP_BILL,
    tax_ids=[("eu_vat", "DE111")],
    currency="EUR",
    tax_exemption="reverse",
)
CRM_ONLY = src("crm", "001B", NEW, name="Beta AG", tax_ids=[("eu_vat", "DE222")], currency="EUR")
ERP_BARE = src("erp", "C2", OLD, name="BETA AG")

CASES = [
    # (records, field, expected value, (system, strategy))
    ([CRM, ERP], "name", "Acme GmbH", ("crm", "source_priority")),
    ([ERP, CRM], "name", "Acme GmbH", ("crm", "source_priority")),
    ([CRM, ERP], "email", "new@acme.de", ("crm", "most_recent")),
    ([CRM, ERP], "phone", "+49 30 123456", ("erp", "most_complete")),
    ([CRM, ERP], "address", FULL, ("erp", "most_complete")),
    ([CRM, ERP], "billing_address", ERP_BILL, ("erp", "owner:erp")),
    ([CRM, ERP], "tax_ids", ERP.customer.tax_ids, ("erp", "owner:erp")),
    ([CRM, ERP], "currency", "EUR", ("erp", "owner:erp")),
    ([CRM, ERP], "tax_exemption", TaxExemption.REVERSE_CHARGE, ("erp", "owner:erp")),
    # the ERP holds the record but not the value yet: the fallback applies
    ([CRM_ONLY, ERP_BARE], "tax_ids", CRM_ONLY.customer.tax_ids, ("crm", "most_recent")),
    ([CRM_ONLY, ERP_BARE], "currency", "EUR", ("crm", "most_recent")),
    ([CRM_ONLY, ERP_BARE], "tax_exemption", TaxExemption.NONE, ("erp", "owner:erp")),
    ([CRM_ONLY], "legal_entity", None, None),
]


@pytest.mark.parametrize(("records", "field", "expected", "source"), CASES)
def test_each_field_survives_by_its_rule(
    records: list[CustomerCandidate],
    field: str,
    expected: object,
    source: tuple[str, str] | None,
) -> None:
    golden = RULES.golden(records, global_id="CUS-1")
    assert getattr(golden.customer, field) == expected
    provenance = golden.provenance.get(field)
    if source is None:
        assert provenance is None
    else:
        assert provenance is not None
        assert (provenance.system, provenance.strategy) == source
    assert golden.customer.global_id == "CUS-1"


def test_golden_record_carries_one_id_per_system() -> None:
    golden = RULES.golden([CRM, ERP, CRM_ONLY])
    assert golden.customer.external_ids == {"erp": "C1", "crm": "001A"}


def test_crm_edits_of_financial_fields_never_win_over_the_erp() -> None:
    newer_crm = src(
        "crm",
        "001A",
        datetime(2027, 1, 1, tzinfo=UTC),
        name="Acme",
        tax_ids=[("eu_vat", "DE000")],
        currency="GBP",
    )
    golden = RULES.golden([newer_crm, ERP])
    assert golden.customer.tax_ids == ERP.customer.tax_ids
    assert golden.customer.currency == "EUR"


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        (
            "fields:\n  nickname: {strategy: most_recent}\n",
            2,
            "fields.nickname",
            "unknown customer field 'nickname'",
        ),
        (
            "fields:\n  name: {strategy: source_priority}\n",
            2,
            "fields.name.priority",
            "source_priority needs a non-empty priority list",
        ),
        ("fields:\n  name: {strategy: newest}\n", 2, "fields.name.strategy", "'newest'"),
        (
            "fields:\n  email: {strategy: most_recent, fallback: most_complete}\n",
            2,
            "fields.email.fallback",
            "only allowed with strategy 'owner'",
        ),
        (
            "default:\n  strategy: owner\n  fallback: owner\n",
            3,
            "default.fallback",
            "cannot itself be 'owner'",
        ),
    ],
)
def test_bad_survivorship_config(text: str, line: int, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_survivorship(text, OWNERSHIP, "config/survivorship.yaml")
    assert caught.value.key_path == key
    assert caught.value.line == line
    assert problem in str(caught.value)
