"""Money given back on an invoice: CreditMemo and its lines (amounts are positive credits)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical.base import Identifier, Record, Ref, UsageQuantity
from quote2cash.canonical.currency import CurrencyCode
from quote2cash.canonical.invoice import check_totals
from quote2cash.canonical.money import Money
from quote2cash.canonical.tax import TaxRate
from quote2cash.canonical.time import UtcDateTime


class CreditMemoStatus(StrEnum):
    ISSUED = "issued"
    VOID = "void"


class CreditReason(StrEnum):
    """Why the credit was given (Stripe's credit note reasons)."""

    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"


class CreditMemoLine(Record):
    """A credited amount (>= 0, before tax); service dates, if known, are ``[start, end)``."""

    description: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    invoice_line: Ref | None = None
    quantity: UsageQuantity | None = None
    amount: Money
    tax: Money | None = None
    tax_rate: TaxRate | None = None
    billed_lines: int = Field(default=1, ge=1)
    """How many of billing's lines this credit nets, each with its own rounded tax."""
    service_start: date | None = None
    service_end: date | None = None

    @model_validator(mode="after")
    def _credit_is_positive(self) -> Self:
        if self.amount.is_negative():
            raise ValueError(f"{self.label}: amount {self.amount} must be >= 0 (a credit)")
        if self.tax is not None and self.tax.is_negative():
            raise ValueError(f"{self.label}: tax {self.tax} must be >= 0 (a credit)")
        if (self.service_start is None) != (self.service_end is None):
            raise ValueError(f"{self.label}: give both service_start and service_end, or neither")
        if (
            self.service_start is not None
            and self.service_end is not None
            and self.service_end <= self.service_start
        ):
            raise ValueError(
                f"{self.label}: service_end {self.service_end} must be after service_start "
                f"{self.service_start} (the end is exclusive)"
            )
        return self


class CreditMemo(Record):
    """A credit against one invoice, or (``invoice`` None) to the customer's balance, which
    billing applies to the next invoices; guaranteed: one currency and ``total == lines + tax``."""

    label_fields = ("number",)

    number: Identifier | None = None
    customer: Ref
    invoice: Ref | None = None
    currency: CurrencyCode
    status: CreditMemoStatus = CreditMemoStatus.ISSUED
    reason: CreditReason | None = None
    memo: Annotated[str, Field(max_length=1000)] | None = None
    issued_at: UtcDateTime
    lines: tuple[CreditMemoLine, ...]
    tax: Money
    total: Money

    @model_validator(mode="after")
    def _totals_add_up(self) -> Self:
        if not self.lines:
            raise ValueError(f"{self.label}: lines must not be empty")
        check_totals(
            self.label,
            self.currency,
            [line.amount for line in self.lines],
            [line.tax for line in self.lines],
            self.tax,
            self.total,
        )
        return self

    @property
    def subtotal(self) -> Money:
        return Money.sum((line.amount for line in self.lines), self.currency)
