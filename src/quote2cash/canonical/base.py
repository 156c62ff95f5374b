"""What every canonical record shares: immutability, its ids, references and quantity types."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

Identifier = Annotated[str, Field(min_length=1, max_length=255)]
"""An id in some system (the hub's or an external one): a non-empty string."""

SystemName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
"""The key of ``external_ids``: a lowercase system name such as ``crm``, ``billing``, ``erp``."""

ExternalIds = dict[SystemName, Identifier]


def _refuse_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError(f"must be a decimal string or Decimal, not float (got {value!r})")
    if isinstance(value, bool):
        raise ValueError("must be a decimal string or Decimal, not bool")
    return value


SeatQuantity = Annotated[int, Field(ge=0, strict=True)]
"""A count of seats or units: a non-negative integer (no strings, floats or bools)."""

UsageQuantity = Annotated[
    Decimal, BeforeValidator(_refuse_float), Field(ge=0, allow_inf_nan=False, decimal_places=12)
]
"""Measured usage: a non-negative Decimal with at most 12 decimal places, never a float."""

UnitAmount = Annotated[
    Decimal, BeforeValidator(_refuse_float), Field(ge=0, allow_inf_nan=False, decimal_places=12)
]
"""A price per unit, which may be finer than the currency's minor unit (0.0025 USD per call)."""


DiscountPercent = Annotated[
    Decimal,
    BeforeValidator(_refuse_float),
    Field(gt=0, le=100, allow_inf_nan=False, decimal_places=2),
]
"""A percentage off a price: more than 0, at most 100, at most 2 decimal places (15.5 = 15.5 %)."""

SignedDecimal = Annotated[Decimal, BeforeValidator(_refuse_float), Field(allow_inf_nan=False)]
"""A Decimal that may be negative (e.g. a proration's unit amount), never a float."""


class CanonicalModel(BaseModel):
    """Frozen, strict about unknown fields: a record is a fact, not a bag of attributes."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Ref(CanonicalModel):
    """A pointer to another record: by the hub's global id, by external ids, or both."""

    global_id: Identifier | None = None
    external_ids: ExternalIds = Field(default_factory=dict)

    @model_validator(mode="after")
    def _points_somewhere(self) -> Self:
        if self.global_id is None and not self.external_ids:
            raise ValueError("Ref needs a global_id or at least one external id")
        return self

    @classmethod
    def to(cls, global_id: str) -> Ref:
        return cls(global_id=global_id)

    @classmethod
    def external(cls, system: str, identifier: str) -> Ref:
        return cls(external_ids={system: identifier})

    def id_in(self, system: str) -> str | None:
        return self.external_ids.get(system)

    def __str__(self) -> str:
        return _describe(self.global_id, self.external_ids, ())


class Record(CanonicalModel):
    """A business record: ``global_id`` once the hub has assigned one, plus ids in other systems."""

    label_fields: ClassVar[tuple[str, ...]] = ()
    """Fields that name the record in messages when it has no id yet (e.g. ``number``)."""

    global_id: Identifier | None = None
    external_ids: ExternalIds = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """How errors name this record: ``Invoice in_123``, ``Invoice billing:in_123``."""
        extras = (getattr(self, name) for name in self.label_fields)
        return (
            f"{type(self).__name__} {_describe(self.global_id, self.external_ids, extras)}".rstrip()
        )

    def id_in(self, system: str) -> str | None:
        return self.external_ids.get(system)


def _describe(global_id: object, external_ids: dict[str, str], extras: Iterable[object]) -> str:
    if global_id is not None:
        return str(global_id)
    for system, identifier in external_ids.items():
        return f"{system}:{identifier}"
    for extra in extras:
        if extra is not None:
            return str(extra)
    return ""


M = TypeVar("M", bound=BaseModel)


class RecordValidationError(ValueError):
    """A record that failed validation, as one message naming the record, each field and why."""

    def __init__(self, record: str, error: ValidationError) -> None:
        self.record = record
        self.errors = error.errors(include_url=False, include_context=False)
        problems = "; ".join(_one_problem(record, e) for e in self.errors)
        super().__init__(f"{record}: {problems}")


def _one_problem(record: str, error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix(f"{record}: ")
    if not error["loc"]:
        return message
    field = ".".join(str(part) for part in error["loc"])
    given = error.get("input")
    if isinstance(given, dict | list) or error["type"] == "value_error":
        return f"{field}: {message}"
    return f"{field}: {message} (got {given!r})"


def validate_record(model: type[M], data: Any, *, record: str | None = None) -> M:
    """Validate ``data`` as ``model``; on failure raise one RecordValidationError naming the record.

    ``record`` names it for people (e.g. ``"Stripe invoice in_123"``); by default the model name
    and whatever id the data carries.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        if record is None:
            ids = data if isinstance(data, dict) else {}
            external = ids.get("external_ids")
            extras = getattr(model, "label_fields", ())
            described = _describe(
                ids.get("global_id"),
                external if isinstance(external, dict) else {},
                (ids.get(name) for name in extras),
            )
            record = f"{model.__name__} {described}".rstrip()
        raise RecordValidationError(record, exc) from None
