"""Legal-entity resolution from config/entities.yaml; table-driven, including bad configuration."""

from __future__ import annotations

import pytest

from quote2cash.canonical import Address, Customer
from quote2cash.engine.errors import Category, MappingError
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.entities import load_entities, parse_entities
from unit.masterdata.accounts_data import CONFIG

RESOLVER = load_entities(CONFIG / "entities.yaml")


def account(country: str | None, currency: str | None, *, billing: str | None = None) -> Customer:
    return Customer(
        external_ids={"crm": "001A000000000042"},
        name="Kunde GmbH",
        address=Address(line1="x", city="y", country=country) if country else None,
        billing_address=Address(line1="x", city="y", country=billing) if billing else None,
        currency=currency,
    )


CASES = [
    # (country, currency, billing country, entity, invoicing currency, rule)
    ("DE", "EUR", None, "DE", "EUR", "europe-eur"),
    ("AT", None, None, "DE", "EUR", "europe-eur"),
    ("FR", "EUR", None, "DE", "EUR", "europe-eur"),
    ("NL", "EUR", None, "DE", "EUR", "europe-eur"),
    ("CH", "EUR", None, "DE", "EUR", "europe-eur"),
    ("GB", None, None, "DE", "EUR", "europe-eur"),
    ("GB", "USD", None, "US", "USD", "rest-of-world-usd"),
    ("US", "USD", None, "US", "USD", "north-america-usd"),
    ("CA", None, None, "US", "USD", "north-america-usd"),
    ("JP", "USD", None, "US", "USD", "rest-of-world-usd"),
    ("DE", "USD", None, "US", "USD", "rest-of-world-usd"),
    ("US", "EUR", "DE", "DE", "EUR", "europe-eur"),  # billing address wins over the main address
]


@pytest.mark.parametrize(("country", "currency", "billing", "entity", "invoicing", "rule"), CASES)
def test_accounts_resolve_to_an_entity(
    country: str, currency: str | None, billing: str | None, entity: str, invoicing: str, rule: str
) -> None:
    resolution = RESOLVER.resolve(account(country, currency, billing=billing))
    assert resolution.entity_key == entity
    assert resolution.invoicing_currency == invoicing
    assert resolution.rule == rule
    assert resolution.legal_entity.base_currency == invoicing
    assert resolution.legal_entity.name == {"DE": "Q2C GmbH", "US": "Q2C Inc."}[entity]
    assert resolution.tax_registration


@pytest.mark.parametrize(
    ("country", "currency", "message"),
    [
        (
            "BR",
            "BRL",
            "account 001A000000000042: no legal-entity rule for billing country 'BR' "
            "and currency 'BRL'",
        ),
        ("GB", "GBP", "no legal-entity rule for billing country 'GB' and currency 'GBP'"),
        ("CH", "CHF", "billing country 'CH' and currency 'CHF'"),
        (
            None,
            "EUR",
            "account 001A000000000042: no legal-entity rule can apply: no billing country",
        ),
    ],
)
def test_unresolvable_accounts_are_mapping_errors(
    country: str | None, currency: str, message: str
) -> None:
    with pytest.raises(MappingError) as caught:
        RESOLVER.resolve(account(country, currency))
    assert message in str(caught.value)
    assert caught.value.category is Category.MAPPING


PRODUCT_LINES = """
entities:
  US: {name: Q2C Inc., country: US, base_currency: USD}
  DE: {name: Q2C GmbH, country: DE, base_currency: EUR, tax_registration: DE136695976}
rules:
  - name: services-in-germany
    when: {billing_country: [US], product_line: [services]}
    entity: DE
  - name: us
    when: {billing_country: [US]}
    entity: US
"""


def test_product_line_rules_come_first_when_listed_first() -> None:
    resolver = parse_entities(PRODUCT_LINES)
    us = account("US", "USD")
    assert resolver.resolve(us, product_line="services").entity_key == "DE"
    assert resolver.resolve(us, product_line="services").tax_registration == "DE136695976"
    assert resolver.resolve(us, product_line="platform").entity_key == "US"
    assert resolver.resolve(us).entity_key == "US"
    with pytest.raises(MappingError, match="and product line 'x'"):
        resolver.resolve(account("FR", "EUR"), product_line="x")


GOOD = (CONFIG / "entities.yaml").read_text()


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("text", "needle", "key", "problem"),
    [
        (
            GOOD.replace(
                "    entity: US\n    invoicing_currency: USD\n  - name: rest",
                "    entity: UK\n    invoicing_currency: USD\n  - name: rest",
            ),
            "entity: UK",
            "rules[1].entity",
            "entity 'UK' of rule 'north-america-usd' is not defined",
        ),
        (
            GOOD.replace("region: [NORTH_AMERICA]", "region: [AMERICAS]"),
            "region: [AMERICAS]",
            "rules[1].when.region",
            "region 'AMERICAS' of rule 'north-america-usd' is not defined",
        ),
        (
            GOOD.replace("base_currency: EUR,", "base_currency: EURO,"),
            "DE: {name",
            "entities.DE.base_currency",
            "EURO",
        ),
        (
            GOOD.replace(
                "    invoicing_currency: USD\n  - name: rest",
                "    invoicing_currency: usd\n  - name: rest",
            ),
            "invoicing_currency: usd",
            "rules[1].invoicing_currency",
            "usd",
        ),
        (
            GOOD.replace("when: {region: [EU, EEA_CH, UK]", "when: {regions: [EU, EEA_CH, UK]"),
            "regions: [EU",
            "rules[0].when.regions",
            "unknown key",
        ),
        (
            GOOD.replace('billing_country: "*"', "billing_country: [usa]"),
            "billing_country: [usa]",
            "rules[2].when.billing_country[0]",
            "usa",
        ),
    ],
)
def test_bad_entities_config(text: str, needle: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_entities(text, "config/entities.yaml")
    assert caught.value.key_path == key
    assert caught.value.line == line_of(text, needle)
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"config/entities.yaml: line {caught.value.line}: {key}: ")
