"""Money received (or not): a Payment against an invoice."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical.base import Record, Ref
from quote2cash.canonical.money import Money
from quote2cash.canonical.time import UtcDateTime


class PaymentStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class Payment(Record):
    """A payment attempt: failed ones say why; refunded ones say how much came back."""

    customer: Ref | None = None
    invoice: Ref | None = None
    amount: Money
    status: PaymentStatus
    created_at: UtcDateTime
    failure_code: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    failure_reason: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    amount_refunded: Money | None = None
    method: Annotated[str, Field(min_length=1, max_length=100)] | None = None

    @model_validator(mode="after")
    def _status_is_explained(self) -> Self:
        if not self.amount.is_positive():
            raise ValueError(f"{self.label}: amount {self.amount} must be > 0")
        failed = self.status is PaymentStatus.FAILED
        if failed and self.failure_reason is None:
            raise ValueError(f"{self.label}: a failed payment needs a failure_reason")
        if not failed and (self.failure_reason is not None or self.failure_code is not None):
            raise ValueError(
                f"{self.label}: failure_reason/failure_code are only for status 'failed', "
                f"got status '{self.status}'"
            )
        refunded = self.amount_refunded
        if self.status is PaymentStatus.REFUNDED and refunded is None:
            raise ValueError(f"{self.label}: a refunded payment needs amount_refunded")
        if refunded is not None:
            if failed:
                raise ValueError(f"{self.label}: a failed payment cannot have amount_refunded")
            if refunded.currency != self.amount.currency:
                raise ValueError(
                    f"{self.label}: amount_refunded currency {refunded.currency} != amount "
                    f"currency {self.amount.currency}"
                )
            if not refunded.is_positive() or refunded > self.amount:
                raise ValueError(
                    f"{self.label}: amount_refunded {refunded} must be > 0 and <= amount "
                    f"{self.amount}"
                )
        return self
