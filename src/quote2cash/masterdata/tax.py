"""Tax determination: which tax rate a legal entity charges a customer, from ``config/tax.yaml``.

Rules are per legal entity and tried in order; the first whose conditions hold gives the rate (or
none: untaxed). A customer whose tax exemption is ``exempt`` is untaxed before any rule. A rate of
treatment ``reverse_charge`` marks the customer ``reverse`` in billing. Regions are the ones of
``config/entities.yaml``; an entity with no matching rule is a MappingError naming the customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical import Customer, TaxExemption, TaxRate, TaxTreatment
from quote2cash.canonical.tax import TaxCode, TaxPercentage
from quote2cash.engine.errors import MappingError
from quote2cash.masterdata.config import (
    KeyedValueError,
    LoadedYaml,
    StrictModel,
    parse_yaml,
    read_yaml,
    validate_model,
)
from quote2cash.masterdata.entities import EntityResolution, EntityResolver, account_label

Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
_VAT_PREFIX = {"GR": "EL"}
_VAT_BODY = re.compile(r"^[0-9A-Z+*]{2,12}$")


class VatIdCondition(StrEnum):
    VALID = "valid"
    ABSENT = "absent"


class RateDefinition(StrictModel):
    display_name: Annotated[str, Field(min_length=1, max_length=50)]
    percentage: TaxPercentage
    inclusive: bool = False
    treatment: TaxTreatment = TaxTreatment.STANDARD
    country: Country | None = None
    jurisdiction: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    tax_type: Annotated[str, Field(pattern=r"^[a-z_]{2,40}$")] = "vat"
    note: Annotated[str, Field(min_length=1, max_length=500)] | None = None

    @model_validator(mode="after")
    def _zero_unless_standard(self) -> Self:
        if self.treatment is not TaxTreatment.STANDARD and self.percentage != Decimal(0):
            raise ValueError(
                f"a {self.treatment.value} rate charges nothing: percentage must be 0, "
                f"got {self.percentage}"
            )
        return self


class TaxConditions(StrictModel):
    """All listed conditions must hold; an omitted condition matches anything."""

    billing_country: list[Country] | None = None
    region: list[str] | None = None
    vat_id: VatIdCondition | None = None


class TaxRule(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    entity: str
    when: TaxConditions = Field(default_factory=TaxConditions)
    rate: TaxCode | None


class TaxConfig(StrictModel):
    """``config/tax.yaml``: the group's tax rates and, per legal entity, ordered rules."""

    version: Annotated[int, Field(ge=1)] = 1
    rates: dict[TaxCode, RateDefinition]
    rules: Annotated[list[TaxRule], Field(min_length=1)]

    @model_validator(mode="after")
    def _rates_exist(self) -> Self:
        for index, rule in enumerate(self.rules):
            if rule.rate is not None and rule.rate not in self.rates:
                raise KeyedValueError(
                    ("rules", index, "rate"),
                    f"rate {rule.rate!r} of rule {rule.name!r} is not defined under rates "
                    f"(defined: {', '.join(sorted(self.rates))})",
                )
        return self


@dataclass(frozen=True)
class TaxDetermination:
    """The rate a customer is charged (None: untaxed), billing's exemption flag and the rule."""

    rate: TaxRate | None
    exemption: TaxExemption
    rule: str

    @property
    def rates(self) -> tuple[TaxRate, ...]:
        return () if self.rate is None else (self.rate,)


def has_valid_vat_id(customer: Customer, country: str) -> bool:
    """An ``eu_vat`` id with the country's prefix and a well-formed body (VIES is not reachable
    from here; the ERP validates the number itself)."""
    prefix = _VAT_PREFIX.get(country, country)
    for tax_id in customer.tax_ids:
        value = tax_id.value.replace(" ", "").upper()
        if (
            tax_id.type == "eu_vat"
            and value.startswith(prefix)
            and _VAT_BODY.match(value[len(prefix) :])
        ):
            return True
    return False


class TaxResolver:
    def __init__(self, config: TaxConfig, entities: EntityResolver) -> None:
        self.config = config
        self.entities = entities

    def rate(self, code: str) -> TaxRate:
        spec = self.config.rates[code]
        return TaxRate(code=code, **spec.model_dump())

    def rates(self) -> list[TaxRate]:
        return [self.rate(code) for code in self.config.rates]

    def determine(self, customer: Customer, entity: EntityResolution) -> TaxDetermination:
        """The first rule of ``entity`` matching the customer's billing country and VAT id."""
        if customer.tax_exemption is TaxExemption.EXEMPT:
            return TaxDetermination(None, TaxExemption.EXEMPT, "customer-exempt")
        address = customer.billing_address or customer.address
        label = account_label(customer)
        if address is None:
            raise MappingError(
                f"account {label}: no tax rule can apply: no billing country "
                "(billing_address and address are both empty)"
            )
        country = address.country
        regions = self.entities.regions_of(country)
        valid_vat = has_valid_vat_id(customer, country)
        for rule in self.config.rules:
            when = rule.when
            if rule.entity != entity.entity_key:
                continue
            if when.billing_country is not None and country not in when.billing_country:
                continue
            if when.region is not None and not regions.intersection(when.region):
                continue
            if when.vat_id is VatIdCondition.VALID and not valid_vat:
                continue
            if when.vat_id is VatIdCondition.ABSENT and valid_vat:
                continue
            rate = None if rule.rate is None else self.rate(rule.rate)
            reverse = rate is not None and rate.treatment is TaxTreatment.REVERSE_CHARGE
            exemption = TaxExemption.REVERSE_CHARGE if reverse else TaxExemption.NONE
            return TaxDetermination(rate, exemption, rule.name)
        raise MappingError(
            f"account {label}: no tax rule of legal entity {entity.entity_key} for billing "
            f"country '{country}' (VAT id {'valid' if valid_vat else 'absent or invalid'})"
        )


def _build(loaded: LoadedYaml, entities: EntityResolver) -> TaxResolver:
    config = validate_model(TaxConfig, loaded)
    known = entities.config
    for index, rule in enumerate(config.rules):
        if rule.entity not in known.entities:
            raise loaded.error(
                ("rules", index, "entity"),
                f"entity {rule.entity!r} of rule {rule.name!r} is not a legal entity of "
                f"entities.yaml (defined: {', '.join(sorted(known.entities))})",
            )
        for region in rule.when.region or ():
            if region not in known.regions:
                raise loaded.error(
                    ("rules", index, "when", "region"),
                    f"region {region!r} of rule {rule.name!r} is not defined in entities.yaml",
                )
    return TaxResolver(config, entities)


def load_tax(path: str | Path, entities: EntityResolver) -> TaxResolver:
    return _build(read_yaml(path), entities)


def parse_tax(text: str, entities: EntityResolver, source: str = "<tax.yaml>") -> TaxResolver:
    return _build(parse_yaml(text, source), entities)
