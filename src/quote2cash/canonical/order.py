"""A booked deal: the Order (from a closed-won opportunity) and its lines."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical.base import Identifier, Record, Ref, SeatQuantity
from quote2cash.canonical.currency import CurrencyCode
from quote2cash.canonical.money import Money
from quote2cash.canonical.time import UtcDateTime


class OrderStatus(StrEnum):
    DRAFT = "draft"
    BOOKED = "booked"
    CANCELLED = "cancelled"


class OrderLine(Record):
    """One product on an order: ``amount == unit_price * quantity - discount``, exactly."""

    product: Ref
    price_plan: Ref | None = None
    description: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    quantity: SeatQuantity
    unit_price: Money
    discount: Money | None = None
    amount: Money

    @model_validator(mode="after")
    def _amount_adds_up(self) -> Self:
        currency = self.unit_price.currency
        for name in ("discount", "amount"):
            money: Money | None = getattr(self, name)
            if money is not None and money.currency != currency:
                raise ValueError(
                    f"{self.label}: {name} currency {money.currency} != unit_price currency "
                    f"{currency}"
                )
        expected = self.unit_price * self.quantity
        if self.discount is not None:
            expected = expected - self.discount
        if self.amount != expected:
            discount = f" - discount {self.discount.amount:f}" if self.discount else ""
            raise ValueError(
                f"{self.label}: amount {self.amount} != unit_price {self.unit_price.amount:f} x "
                f"quantity {self.quantity}{discount} = {expected}"
            )
        return self


class Order(Record):
    """What the customer bought, in one currency; ``total`` is derived from the lines."""

    label_fields = ("number",)

    number: Identifier | None = None
    customer: Ref
    """The sold-to account: who bought."""
    bill_to: Ref | None = None
    """The account invoiced and paying, when it is not the sold-to (a group's treasury)."""
    legal_entity: Ref | None = None
    currency: CurrencyCode
    status: OrderStatus = OrderStatus.BOOKED
    booked_at: UtcDateTime | None = None
    start_date: date
    end_date: date | None = None
    lines: tuple[OrderLine, ...]

    @model_validator(mode="after")
    def _one_currency_and_term(self) -> Self:
        if not self.lines:
            raise ValueError(f"{self.label}: lines must not be empty")
        for index, line in enumerate(self.lines):
            if line.amount.currency != self.currency:
                raise ValueError(
                    f"{self.label}: lines[{index}] currency {line.amount.currency} != order "
                    f"currency {self.currency}"
                )
        if self.end_date is not None and self.end_date <= self.start_date:
            raise ValueError(
                f"{self.label}: end_date {self.end_date} must be after start_date {self.start_date}"
            )
        return self

    @property
    def total(self) -> Money:
        return Money.sum((line.amount for line in self.lines), self.currency)
