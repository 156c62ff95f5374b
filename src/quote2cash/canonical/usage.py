"""Metered consumption: one UsageRecord per measured event or aggregate, deduplicated by key."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical.base import Record, Ref, UsageQuantity
from quote2cash.canonical.time import UtcDateTime


class UsageRecord(Record):
    """Usage of a subscription item, or of a billing meter (then ``customer`` is required).

    ``idempotency_key`` identifies the measurement at its source: the same key twice is the same
    usage, counted once.
    """

    label_fields = ("idempotency_key",)

    subscription_item: Ref | None = None
    meter: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    customer: Ref | None = None
    quantity: UsageQuantity
    timestamp: UtcDateTime
    idempotency_key: Annotated[str, Field(min_length=1, max_length=255)]

    @model_validator(mode="after")
    def _counts_against_one_thing(self) -> Self:
        if (self.subscription_item is None) == (self.meter is None):
            raise ValueError(f"{self.label}: give exactly one of subscription_item or meter")
        if self.meter is not None and self.customer is None:
            raise ValueError(f"{self.label}: meter usage needs the customer it belongs to")
        return self
