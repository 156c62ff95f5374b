"""What is sold: Product, and PricePlan (a recurring price of a product)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical.base import Record, Ref, UnitAmount
from quote2cash.canonical.currency import CurrencyCode
from quote2cash.canonical.money import DEFAULT_ROUNDING, Money, exact_product, to_decimal

Text = Annotated[str, Field(min_length=1, max_length=500)]


class Product(Record):
    name: Text
    sku: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None
    unit_label: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    active: bool = True


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"


class UsageType(StrEnum):
    """``licensed``: billed for a quantity set in advance; ``metered``: billed on reported usage."""

    LICENSED = "licensed"
    METERED = "metered"


class PricePlan(Record):
    """A price of a product per interval (``interval`` None: a one-time price);
    ``unit_amount`` may be finer than the currency's cent."""

    product: Ref
    currency: CurrencyCode
    unit_amount: UnitAmount
    interval: Interval | None
    interval_count: Annotated[int, Field(ge=1, le=36, strict=True)] = 1
    usage_type: UsageType = UsageType.LICENSED
    per_seat: bool = False
    nickname: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    active: bool = True

    @model_validator(mode="after")
    def _seats_are_licensed(self) -> Self:
        if self.per_seat and self.usage_type is UsageType.METERED:
            raise ValueError(
                f"{self.label}: per_seat price must have usage_type 'licensed', got 'metered'"
            )
        return self

    def amount_for(
        self, quantity: Decimal | int | str, *, rounding: str = DEFAULT_ROUNDING
    ) -> Money:
        """Charge for ``quantity`` units in one interval, rounded once at the end (HALF_UP)."""
        exact = exact_product(self.unit_amount, to_decimal(quantity, what="quantity"))
        return Money.quantize(exact, self.currency, rounding=rounding)
