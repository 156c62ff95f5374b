"""Tax determination from config/tax.yaml: per legal entity and jurisdiction; bad config."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quote2cash.canonical import Address, Customer, TaxExemption, TaxTreatment
from quote2cash.engine.errors import MappingError
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.entities import load_entities
from quote2cash.masterdata.tax import load_tax, parse_tax
from unit.masterdata.accounts_data import CONFIG

ENTITIES = load_entities(CONFIG / "entities.yaml")
TAX = load_tax(CONFIG / "tax.yaml", ENTITIES)


def account(
    country: str,
    currency: str,
    vat: str | None = None,
    exemption: TaxExemption = TaxExemption.NONE,
) -> Customer:
    return Customer(
        external_ids={"crm": "001A000000000042"},
        name="Kunde GmbH",
        address=Address(line1="x", city="y", country=country),
        currency=currency,
        tax_ids=(("eu_vat", vat),) if vat else (),
        tax_exemption=exemption,
    )


CASES = [
    # (country, currency, VAT id, rate code or None, billing exemption, rule)
    ("DE", "EUR", None, "DE-VAT-19", "none", "gmbh-domestic"),
    ("DE", "EUR", "DE123456789", "DE-VAT-19", "none", "gmbh-domestic"),
    ("FR", "EUR", "FR40303265045", "EU-VAT-RC", "reverse", "gmbh-eu-b2b-reverse-charge"),
    ("NL", "EUR", "NL 8532.47.102", "DE-VAT-19", "none", "gmbh-eu-b2c"),  # malformed id
    ("NL", "EUR", "DE123456789", "DE-VAT-19", "none", "gmbh-eu-b2c"),  # another country's id
    ("FR", "EUR", None, "DE-VAT-19", "none", "gmbh-eu-b2c"),
    ("GB", "EUR", None, None, "none", "gmbh-outside-eu"),
    ("CH", "EUR", None, None, "none", "gmbh-outside-eu"),
    ("US", "USD", None, None, "none", "inc-untaxed"),
    ("JP", "USD", None, None, "none", "inc-untaxed"),
]


@pytest.mark.parametrize(("country", "currency", "vat", "code", "exemption", "rule"), CASES)
def test_customers_get_their_entitys_rate(
    country: str, currency: str, vat: str | None, code: str | None, exemption: str, rule: str
) -> None:
    customer = account(country, currency, vat)
    found = TAX.determine(customer, ENTITIES.resolve(customer))
    assert (found.rate.code if found.rate else None, found.exemption.value, found.rule) == (
        code,
        exemption,
        rule,
    )


def test_rates_carry_percentage_and_treatment() -> None:
    customer = account("FR", "EUR", "FR40303265045")
    reverse = TAX.determine(customer, ENTITIES.resolve(customer)).rate
    assert reverse is not None and reverse.percentage == Decimal(0)
    assert reverse.treatment is TaxTreatment.REVERSE_CHARGE and reverse.note
    assert TAX.rate("DE-VAT-19").percentage == Decimal(19)


def test_an_exempt_customer_is_untaxed() -> None:
    customer = account("DE", "EUR", exemption=TaxExemption.EXEMPT)
    found = TAX.determine(customer, ENTITIES.resolve(customer))
    assert (found.rate, found.exemption, found.rates) == (None, TaxExemption.EXEMPT, ())


def test_an_entity_without_a_matching_rule_is_a_mapping_error() -> None:
    only_de = parse_tax(
        "rates: {}\nrules:\n  - {name: inc-us, entity: US, when: {billing_country: [US]}, "
        "rate: null}\n",
        ENTITIES,
    )
    customer = account("JP", "USD")
    with pytest.raises(MappingError, match=r"001A000000000042.*legal entity US.*'JP'"):
        only_de.determine(customer, ENTITIES.resolve(customer))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rates: {}\nrules:\n  - {name: a, entity: DE, rate: VAT}\n", "line 3: rules[0].rate"),
        ("rates: {}\nrules:\n  - {name: a, entity: FR, rate: null}\n", "rules[0].entity"),
        (
            "rates: {}\nrules:\n  - {name: a, entity: DE, when: {region: [MARS]}, rate: null}\n",
            "rules[0].when.region: region 'MARS'",
        ),
        (
            "rates:\n  RC: {display_name: RC, percentage: 5, treatment: reverse_charge}\n"
            "rules:\n  - {name: a, entity: DE, rate: RC}\n",
            "percentage must be 0",
        ),
        (
            "rates:\n  VAT: {display_name: VAT, percentage: 119}\nrules:\n"
            "  - {name: a, entity: DE, rate: VAT}\n",
            "rates.VAT.percentage",
        ),
        ("rates: {}\nrules:\n  - {name: a, entity: DE, rate: null, typo: 1}\n", "unknown key"),
    ],
)
def test_bad_configuration_names_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"tax\.yaml") as error:
        parse_tax(text, ENTITIES, source="config/tax.yaml")
    assert message in str(error.value)
