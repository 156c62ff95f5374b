"""Field ownership: which system may change which field; the one place every flow asks.

A change from a system that does not own a field is not propagated; it becomes an ownership
violation and a ``masterdata.ownership.violated`` event payload, so finance sees who tried.
``reconcile_owned`` applies the rules to a whole record: what a system sends is kept for the
fields it owns and replaced by the owner's value for the others, each difference named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, field_validator

from quote2cash.canonical import Money
from quote2cash.engine.errors import MappingError
from quote2cash.engine.events import Event, new_event
from quote2cash.masterdata.config import StrictModel, parse_yaml, read_yaml, validate_model

SystemName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
VIOLATION_EVENT = "masterdata.ownership.violated"
IDENTITY_FIELDS = frozenset({"global_id", "external_ids"})
"""Ids are the cross-reference store's business, never an owned field."""
M = TypeVar("M", bound=BaseModel)


class EntityOwnership(StrictModel):
    """Owners of one entity's fields; ``default_owner`` covers fields not listed (None: nobody)."""

    default_owner: SystemName | None = None
    fields: dict[str, SystemName | list[SystemName]] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _owners_listed(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for name, owner in value.items():
            if isinstance(owner, list) and not owner:
                raise ValueError(f"field {name!r}: list of owners must not be empty")
        return value

    def owners_of(self, field: str) -> tuple[str, ...]:
        """Owners of ``field``; a nested path (``address.city``) follows its top-level field."""
        top = field.split(".", 1)[0]
        owner = self.fields.get(field, self.fields.get(top, self.default_owner))
        if owner is None:
            return ()
        return tuple(owner) if isinstance(owner, list) else (owner,)


class OwnershipConfig(StrictModel):
    """``config/ownership.yaml``: per entity and field, the owning system (or systems)."""

    version: Annotated[int, Field(ge=1)] = 1
    entities: dict[str, EntityOwnership]

    def entity(self, name: str) -> EntityOwnership:
        try:
            return self.entities[name]
        except KeyError:
            known = ", ".join(sorted(self.entities))
            raise MappingError(
                f"no ownership rules for entity {name!r} (configured: {known})"
            ) from None

    def owners_of(self, entity: str, field: str) -> tuple[str, ...]:
        return self.entity(entity).owners_of(field)

    def owner_of(self, entity: str, field: str) -> str | None:
        """The single owner of ``field`` (the first listed when several share it)."""
        owners = self.owners_of(entity, field)
        return owners[0] if owners else None


@dataclass(frozen=True)
class OwnershipViolation:
    entity: str
    field: str
    source_system: str
    owners: tuple[str, ...]

    @property
    def owner(self) -> str | None:
        return self.owners[0] if self.owners else None

    def event_payload(self, entity_id: str | None = None) -> dict[str, Any]:
        """The ``data`` of a ``masterdata.ownership.violated`` event."""
        return {
            "entity": self.entity,
            "entity_id": entity_id,
            "field": self.field,
            "source_system": self.source_system,
            "owner": self.owner,
            "owners": list(self.owners),
        }


@dataclass(frozen=True)
class OwnershipDecision:
    """Which changed fields may propagate, and which were refused as ownership violations."""

    entity: str
    source_system: str
    propagate: tuple[str, ...]
    violations: tuple[OwnershipViolation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def allowed_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Keep only the values of fields that may propagate."""
        return {name: value for name, value in values.items() if name in self.propagate}

    def warning_events(self, entity_id: str | None = None) -> list[dict[str, Any]]:
        """One ``{"type", "data"}`` payload per violation, ready for the event log."""
        return [
            {"type": VIOLATION_EVENT, "data": violation.event_payload(entity_id)}
            for violation in self.violations
        ]

    def events(
        self,
        subject: str,
        *,
        correlation_id: str,
        causation_id: str | None = None,
        entity_id: str | None = None,
        time: datetime | None = None,
    ) -> list[Event]:
        """The violations as engine events on ``subject``, in the change's correlation."""
        return [
            new_event(
                VIOLATION_EVENT,
                subject,
                violation.event_payload(entity_id),
                correlation_id=correlation_id,
                causation_id=causation_id,
                time=time,
            )
            for violation in self.violations
        ]


def check_change(
    config: OwnershipConfig, entity: str, source_system: str, changed_fields: Iterable[str]
) -> OwnershipDecision:
    """Split a change from ``source_system`` into fields it owns and ownership violations.

    Fields keep their given order; a field no system owns is a violation with no owner. An
    entity without rules is a MappingError (the flow's exception queue, category ``mapping``).
    """
    rules = config.entity(entity)
    propagate: list[str] = []
    violations: list[OwnershipViolation] = []
    seen: set[str] = set()
    for name in changed_fields:
        if name in seen:
            continue
        seen.add(name)
        owners = rules.owners_of(name)
        if source_system in owners:
            propagate.append(name)
        else:
            violations.append(OwnershipViolation(entity, name, source_system, owners))
    return OwnershipDecision(entity, source_system, tuple(propagate), tuple(violations))


@dataclass(frozen=True)
class FieldConflict:
    """A field a system sent with a value other than its owner holds: not propagated.

    ``sent`` and ``held`` are the two values as people read them (None: empty)."""

    entity: str
    record: str
    field: str
    source_system: str
    owner: str
    sent: str | None
    held: str | None

    @property
    def message(self) -> str:
        return (
            f"{self.entity} {self.record}: field {self.field!r} is owned by {self.owner}; "
            f"{self.source_system} shows {_shown(self.sent)}, {self.owner} holds "
            f"{_shown(self.held)}: not propagated"
        )

    def event_payload(self, entity_id: str | None = None) -> dict[str, Any]:
        """The ``data`` of a ``masterdata.ownership.violated`` event, with both values."""
        return {
            "entity": self.entity,
            "entity_id": entity_id,
            "record": self.record,
            "field": self.field,
            "source_system": self.source_system,
            "owner": self.owner,
            "owners": [self.owner],
            "sent": self.sent,
            "held": self.held,
            "reason": self.message,
        }


@dataclass(frozen=True)
class OwnedRecord(Generic[M]):
    """A record as it may propagate: the sender's values for the fields it owns, the owners'
    values for the rest; ``conflicts`` are the sender's differing values that were refused."""

    record: M
    propagated: tuple[str, ...]
    conflicts: tuple[FieldConflict, ...]


def shown_value(value: Any) -> str | None:
    """A field's value as people read it and as ownership compares it (None: empty)."""
    if value is None or value == () or value == "":
        return None
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Money):
        return str(Money.quantize(value.amount, value.currency))
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json", exclude_none=True)
        if set(data) <= {"global_id", "external_ids"}:
            ids = [data.get("global_id"), *dict(data.get("external_ids") or {}).values()]
            return next((str(i) for i in ids if i), None)
        if set(data) >= {"type", "value"} and len(data) == 2:
            return re.sub(r"[^0-9A-Z]", "", str(data["value"]).upper())
        return ", ".join(str(v) for v in data.values() if v not in (None, "", [], {}))
    if isinstance(value, tuple | list):
        parts = sorted(p for p in (shown_value(v) for v in value) if p)
        return ", ".join(parts) or None
    return str(value)


def differs(shown: Any, held: Any) -> bool:
    """Whether a system shows another value than the owner holds. A collection (tax ids) may
    be shown in part (a CRM with one VAT field): only a member the owner does not hold, or none
    shown of a non-empty one, differs."""
    if isinstance(shown, tuple | list) and isinstance(held, tuple | list):
        mine = {shown_value(v) for v in shown} - {None}
        theirs = {shown_value(v) for v in held} - {None}
        return bool(mine - theirs) or (not mine and bool(theirs))
    return shown_value(shown) != shown_value(held)


def reconcile_owned(
    config: OwnershipConfig,
    entity: str,
    source_system: str,
    sent: M,
    held: Mapping[str, M],
    *,
    record: str,
) -> OwnedRecord[M]:
    """Apply ownership to a whole record ``source_system`` sent (e.g. a CRM account edit).

    A field the sender carries (set on the record) and owns keeps the sent value; a field it
    carries but does not own takes the value an owner holds (``held``: system -> its record,
    with the fields that owner carries set), and a different sent value is a ``FieldConflict``
    naming ``record``, the field and both values. A non-owned field no owner holds is left as
    sent and not listed in ``propagated``: the flow sets it from what it resolved itself."""
    rules = config.entity(entity)
    updates: dict[str, Any] = {}
    propagated: list[str] = []
    conflicts: list[FieldConflict] = []
    for name in sorted(sent.model_fields_set - IDENTITY_FIELDS):
        owners = rules.owners_of(name)
        if source_system in owners:
            propagated.append(name)
            continue
        holder = next((o for o in owners if o in held and name in held[o].model_fields_set), None)
        if holder is None:
            continue
        owned_value = getattr(held[holder], name)
        updates[name] = owned_value
        if differs(getattr(sent, name), owned_value):
            mine, theirs = shown_value(getattr(sent, name)), shown_value(owned_value)
            conflicts.append(
                FieldConflict(entity, record, name, source_system, holder, mine, theirs)
            )
    return OwnedRecord(sent.model_copy(update=updates), tuple(propagated), tuple(conflicts))


def _shown(value: str | None) -> str:
    return "(empty)" if value is None else repr(value)


def load_ownership(path: str | Path) -> OwnershipConfig:
    return validate_model(OwnershipConfig, read_yaml(path))


def parse_ownership(text: str, source: str = "<ownership.yaml>") -> OwnershipConfig:
    return validate_model(OwnershipConfig, parse_yaml(text, source))
