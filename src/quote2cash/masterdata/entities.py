"""Legal-entity resolution: which company of the group contracts with an account, in what currency.

Rules live in ``config/entities.yaml`` and are tried in order; the first whose conditions all hold
wins. An account no rule resolves is a MappingError naming the account and what was looked for.
The entity is decided once per contract, at Closed Won, and kept (``EntityDecisions``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from quote2cash.canonical import Customer, LegalEntity, validate_currency_code
from quote2cash.engine.clock import Clock
from quote2cash.engine.errors import MappingError
from quote2cash.masterdata.config import (
    KeyedValueError,
    StrictModel,
    parse_yaml,
    read_yaml,
    validate_model,
)
from quote2cash.store.schema import md_sync_state
from quote2cash.store.upsert import upsert_row

Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
ANY = "*"


def _currency(value: str) -> str:
    validate_currency_code(value)
    return value


class EntityDefinition(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    country: Country
    base_currency: str
    tax_registration: str | None = None

    @field_validator("base_currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        return _currency(value)


class RuleConditions(StrictModel):
    """All listed conditions must hold; an omitted condition matches anything.

    ``currency`` may list ``null`` to match an account whose currency is not set yet.
    """

    billing_country: list[Country] | Annotated[str, Field(pattern=r"^\*$")] | None = None
    region: list[str] | None = None
    currency: list[str | None] | None = None
    product_line: list[str] | None = None

    @field_validator("currency")
    @classmethod
    def _known_currencies(cls, value: list[str | None] | None) -> list[str | None] | None:
        for code in value or ():
            if code is not None:
                _currency(code)
        return value


class EntityRule(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    when: RuleConditions
    entity: str
    invoicing_currency: str | None = None
    tax_registration: str | None = None

    @field_validator("invoicing_currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        return None if value is None else _currency(value)


class EntitiesConfig(StrictModel):
    """``config/entities.yaml``: the group's legal entities, named regions and ordered rules."""

    version: Annotated[int, Field(ge=1)] = 1
    entities: dict[str, EntityDefinition]
    regions: dict[str, list[Country]] = Field(default_factory=dict)
    rules: Annotated[list[EntityRule], Field(min_length=1)]

    @model_validator(mode="after")
    def _references_exist(self) -> Self:
        for index, rule in enumerate(self.rules):
            if rule.entity not in self.entities:
                raise KeyedValueError(
                    ("rules", index, "entity"),
                    f"entity {rule.entity!r} of rule {rule.name!r} is not defined under "
                    f"entities (defined: {', '.join(sorted(self.entities))})",
                )
            for region in rule.when.region or ():
                if region not in self.regions:
                    raise KeyedValueError(
                        ("rules", index, "when", "region"),
                        f"region {region!r} of rule {rule.name!r} is not defined under regions",
                    )
        return self


@dataclass(frozen=True)
class EntityResolution:
    """The contracting entity for an account: its key, details, invoicing currency and rule."""

    entity_key: str
    legal_entity: LegalEntity
    invoicing_currency: str
    tax_registration: str | None
    rule: str


def account_label(customer: Customer) -> str:
    """How an account is named in errors: its CRM id if it has one, else its hub or other id."""
    crm = customer.id_in("crm")
    if crm:
        return crm
    if customer.global_id:
        return customer.global_id
    for system, identifier in customer.external_ids.items():
        return f"{system}:{identifier}"
    return repr(customer.name)


class EntityResolver:
    def __init__(self, config: EntitiesConfig) -> None:
        self.config = config

    def legal_entity(self, key: str) -> LegalEntity:
        spec = self.config.entities[key]
        return LegalEntity(
            global_id=key, name=spec.name, country=spec.country, base_currency=spec.base_currency
        )

    def as_decided(self, key: str, invoicing_currency: str) -> EntityResolution:
        """The resolution a recorded decision stands for: its entity, in the contract's currency."""
        spec = self.config.entities[key]
        return EntityResolution(
            entity_key=key,
            legal_entity=self.legal_entity(key),
            invoicing_currency=invoicing_currency,
            tax_registration=spec.tax_registration,
            rule="decided",
        )

    def regions_of(self, country: str) -> set[str]:
        return {name for name, members in self.config.regions.items() if country in members}

    def resolve(self, customer: Customer, *, product_line: str | None = None) -> EntityResolution:
        """The first rule that matches the account's billing country, currency and product line."""
        address = customer.billing_address or customer.address
        label = account_label(customer)
        if address is None:
            raise MappingError(
                f"account {label}: no legal-entity rule can apply: no billing country "
                "(billing_address and address are both empty)"
            )
        country = address.country
        regions = self.regions_of(country)
        for rule in self.config.rules:
            when = rule.when
            if isinstance(when.billing_country, list) and country not in when.billing_country:
                continue
            if when.region is not None and not regions.intersection(when.region):
                continue
            if when.currency is not None and customer.currency not in when.currency:
                continue
            if when.product_line is not None and product_line not in when.product_line:
                continue
            spec = self.config.entities[rule.entity]
            return EntityResolution(
                entity_key=rule.entity,
                legal_entity=self.legal_entity(rule.entity),
                invoicing_currency=rule.invoicing_currency or spec.base_currency,
                tax_registration=rule.tax_registration or spec.tax_registration,
                rule=rule.name,
            )
        currency = f"'{customer.currency}'" if customer.currency else "(not set)"
        line = f" and product line {product_line!r}" if product_line is not None else ""
        raise MappingError(
            f"account {label}: no legal-entity rule for billing country '{country}' and "
            f"currency {currency}{line}"
        )


class EntityDecisions:
    """The legal entity decided for each contract at Closed Won, kept so that every later step
    (booking, invoices, amendments) uses that entity and never resolves it again from a record
    that lacks fields (an ERP customer read back carries no currency).

    Kept beside the master-data sync state (``md_sync_state``, system ``legal_entity``): the
    first decision for a contract stands; a customer's row is its latest contract's, the entity
    of billing documents that belong to no contract.
    """

    SYSTEM = "legal_entity"

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine, self.clock = engine, clock

    def decide(self, contract_gid: str, customer_gid: str, entity_key: str) -> str:
        """Record ``entity_key`` for the contract unless it has one; returns the one in force."""
        kept = self._insert_once(contract_gid, entity_key)
        self._record(customer_gid, kept)
        return kept

    def decided(self, global_id: str) -> str | None:
        """The entity recorded for a contract or customer global id, if any."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(md_sync_state.c.local_id).where(
                    md_sync_state.c.global_id == global_id, md_sync_state.c.system == self.SYSTEM
                )
            ).scalar_one_or_none()
        return None if found is None else str(found)

    def _row(self, global_id: str, entity_key: str) -> dict[str, object]:
        return {
            "global_id": global_id,
            "system": self.SYSTEM,
            "fingerprint": hashlib.sha256(entity_key.encode()).hexdigest(),
            "local_id": entity_key,
            "synced_at": self.clock.now(),
        }

    def _insert_once(self, global_id: str, entity_key: str) -> str:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(md_sync_state).values(**self._row(global_id, entity_key)))
        except IntegrityError:
            return self.decided(global_id) or entity_key
        return entity_key

    def _record(self, global_id: str, entity_key: str) -> None:
        with self.engine.begin() as conn:
            upsert_row(
                conn, md_sync_state, self._row(global_id, entity_key), key=("global_id", "system")
            )


def load_entities(path: str | Path) -> EntityResolver:
    return EntityResolver(validate_model(EntitiesConfig, read_yaml(path)))


def parse_entities(text: str, source: str = "<entities.yaml>") -> EntityResolver:
    return EntityResolver(validate_model(EntitiesConfig, parse_yaml(text, source)))
