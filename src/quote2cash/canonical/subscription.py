"""The running contract in billing: Subscription, its items, and mid-term Amendments."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical.base import DiscountPercent, Identifier, Record, Ref, SeatQuantity
from quote2cash.canonical.currency import CurrencyCode
from quote2cash.canonical.tax import TaxRate
from quote2cash.canonical.time import UtcDateTime


class SubscriptionStatus(StrEnum):
    """Billing owns the lifecycle; these are Stripe's states, which other billers map onto."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    PAUSED = "paused"
    CANCELED = "canceled"


class SubscriptionItem(Record):
    """One price on a subscription; ``quantity`` is None for metered prices (billed on usage).

    ``discount_percent`` is the contract's discount off that price for the whole term (a deal line
    sold at 15 % off billing's price is billed at 15 % off it). The hub sets it when it creates
    the subscription; a subscription read back from billing leaves it unset."""

    price_plan: Ref
    product: Ref | None = None
    quantity: SeatQuantity | None = None
    discount_percent: DiscountPercent | None = None


class Subscription(Record):
    """A contract in billing; ``tax_rates`` are the rates every item is taxed at (none: untaxed)."""

    label_fields = ("contract_number",)

    contract_number: Identifier | None = None
    customer: Ref
    legal_entity: Ref | None = None
    order: Ref | None = None
    currency: CurrencyCode
    status: SubscriptionStatus
    items: tuple[SubscriptionItem, ...]
    current_period_start: UtcDateTime
    current_period_end: UtcDateTime
    started_at: UtcDateTime | None = None
    cancel_at: UtcDateTime | None = None
    canceled_at: UtcDateTime | None = None
    tax_rates: tuple[TaxRate, ...] = ()

    @model_validator(mode="after")
    def _period_is_forward(self) -> Self:
        if not self.items:
            raise ValueError(f"{self.label}: items must not be empty")
        if self.current_period_end <= self.current_period_start:
            raise ValueError(
                f"{self.label}: current_period_end {self.current_period_end.isoformat()} must be "
                f"after current_period_start {self.current_period_start.isoformat()}"
            )
        return self


class ProrationBehavior(StrEnum):
    """How billing charges a mid-period change (Stripe's ``proration_behavior`` values)."""

    CREATE_PRORATIONS = "create_prorations"
    ALWAYS_INVOICE = "always_invoice"
    NONE = "none"


class Amendment(Record):
    """A mid-term quantity change of one subscription item, numbered per contract from 1."""

    subscription: Ref
    subscription_item: Ref
    amendment_number: Annotated[int, Field(ge=1, strict=True)]
    effective_at: UtcDateTime
    previous_quantity: SeatQuantity | None = None
    new_quantity: SeatQuantity
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS
    reason: Annotated[str, Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.previous_quantity is not None and self.previous_quantity == self.new_quantity:
            raise ValueError(
                f"{self.label}: new_quantity {self.new_quantity} must differ from "
                f"previous_quantity {self.previous_quantity}"
            )
        return self
