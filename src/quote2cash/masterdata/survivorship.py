"""Survivorship: which source record's value each field of the golden customer record takes.

Rules per field come from ``config/survivorship.yaml``; the ``owner`` strategy reads the owning
system from ``ownership.yaml``, so financial fields follow the ERP wherever the ERP has a value.
Every chosen value carries its provenance (system, local id, strategy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, Field, model_validator

from quote2cash.canonical import Customer
from quote2cash.masterdata.config import (
    KeyedValueError,
    StrictModel,
    parse_yaml,
    read_yaml,
    validate_model,
)
from quote2cash.masterdata.matching import CustomerCandidate
from quote2cash.masterdata.ownership import OwnershipConfig

SURVIVING_FIELDS = tuple(
    name for name in Customer.model_fields if name not in ("global_id", "external_ids")
)


class Strategy(StrEnum):
    SOURCE_PRIORITY = "source_priority"
    MOST_RECENT = "most_recent"
    MOST_COMPLETE = "most_complete"
    OWNER = "owner"


class FieldRule(StrictModel):
    strategy: Strategy
    priority: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] | None = None
    fallback: Strategy | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        uses_priority = Strategy.SOURCE_PRIORITY in (self.strategy, self.fallback)
        if uses_priority and not self.priority:
            raise KeyedValueError(("priority",), "source_priority needs a non-empty priority list")
        if self.fallback is not None and self.strategy is not Strategy.OWNER:
            raise KeyedValueError(("fallback",), "fallback is only allowed with strategy 'owner'")
        if self.fallback is Strategy.OWNER:
            raise KeyedValueError(("fallback",), "fallback cannot itself be 'owner'")
        return self


class SurvivorshipConfig(StrictModel):
    version: Annotated[int, Field(ge=1)] = 1
    entity: str = "customer"
    default: FieldRule = FieldRule(strategy=Strategy.MOST_RECENT)
    fields: dict[str, FieldRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_fields(self) -> Self:
        for name in self.fields:
            if name not in SURVIVING_FIELDS:
                raise KeyedValueError(
                    ("fields", name),
                    f"unknown customer field {name!r} (known: {', '.join(SURVIVING_FIELDS)})",
                )
        return self

    def rule_for(self, field: str) -> FieldRule:
        return self.fields.get(field, self.default)


@dataclass(frozen=True)
class Provenance:
    system: str
    local_id: str
    strategy: str

    def as_dict(self) -> dict[str, str]:
        return {"system": self.system, "local_id": self.local_id, "strategy": self.strategy}


@dataclass(frozen=True)
class GoldenRecord:
    customer: Customer
    provenance: dict[str, Provenance]


def _has_value(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, tuple | list) or (isinstance(value, str) and not isinstance(value, Enum)):
        return len(value) > 0
    return True


def _completeness(value: Any) -> int:
    if isinstance(value, BaseModel):
        return sum(1 for name in type(value).model_fields if getattr(value, name) is not None)
    if isinstance(value, tuple | list | str):
        return len(value)
    return 1


class Survivorship:
    def __init__(self, config: SurvivorshipConfig, ownership: OwnershipConfig) -> None:
        self.config = config
        self.ownership = ownership

    def golden(
        self, records: Sequence[CustomerCandidate], *, global_id: str | None = None
    ) -> GoldenRecord:
        """The golden record of one real customer from its matched source records."""
        if not records:
            raise ValueError("survivorship needs at least one source record")
        newest_first = sorted(records, key=lambda r: (r.updated_at, r.key), reverse=True)
        values: dict[str, Any] = {}
        provenance: dict[str, Provenance] = {}
        for name in SURVIVING_FIELDS:
            chosen = self._choose(name, self.config.rule_for(name), newest_first)
            if chosen is not None:
                record, strategy = chosen
                values[name] = getattr(record.customer, name)
                provenance[name] = Provenance(record.system, record.local_id, strategy)
        external: dict[str, str] = {}
        for record in sorted(records, key=lambda r: (r.updated_at, r.key)):
            external.setdefault(record.system, record.local_id)
        customer = Customer(global_id=global_id, external_ids=external, **values)
        return GoldenRecord(customer, provenance)

    def _choose(
        self, name: str, rule: FieldRule, newest_first: Sequence[CustomerCandidate]
    ) -> tuple[CustomerCandidate, str] | None:
        with_value = [r for r in newest_first if _has_value(getattr(r.customer, name))]
        strategy = rule.strategy
        if strategy is Strategy.OWNER:
            owners = self.ownership.owners_of(self.config.entity, name)
            owned = [r for r in with_value if r.system in owners]
            if owned:
                return owned[0], f"owner:{owned[0].system}"
            if rule.fallback is None:
                return None
            strategy = rule.fallback
        if not with_value:
            return None
        if strategy is Strategy.MOST_RECENT:
            return with_value[0], strategy.value
        if strategy is Strategy.MOST_COMPLETE:
            best = max(
                enumerate(with_value),
                key=lambda p: (_completeness(getattr(p[1].customer, name)), -p[0]),
            )[1]
            return best, strategy.value
        order = {system: i for i, system in enumerate(rule.priority or ())}
        ranked = sorted(with_value, key=lambda r: order.get(r.system, len(order)))
        return ranked[0], strategy.value


def load_survivorship(path: str | Path, ownership: OwnershipConfig) -> Survivorship:
    return Survivorship(validate_model(SurvivorshipConfig, read_yaml(path)), ownership)


def parse_survivorship(
    text: str, ownership: OwnershipConfig, source: str = "<survivorship.yaml>"
) -> Survivorship:
    return Survivorship(validate_model(SurvivorshipConfig, parse_yaml(text, source)), ownership)
