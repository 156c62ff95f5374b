"""What was billed: Invoice and its lines, each with the service period revenue is deferred over."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from quote2cash.canonical.base import Identifier, Record, Ref, SignedDecimal, UsageQuantity
from quote2cash.canonical.currency import CurrencyCode
from quote2cash.canonical.money import Money
from quote2cash.canonical.tax import TaxRate
from quote2cash.canonical.time import UtcDateTime

Description = Annotated[str, Field(min_length=1, max_length=1000)]


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class InvoiceLine(Record):
    """One charge; the service period is ``[service_start, service_end)``, end exclusive.

    The end is the first day not served (like Stripe's ``period.end``), so it is always after the
    start; ``service_last_day`` gives the inclusive end ERPs often want. ``amount`` is before tax
    and may be negative (proration credit). ``tax`` None means tax is only known per invoice;
    ``tax_rate`` is the rate billing taxed the line at (None: untaxed or not known).
    """

    description: Description | None = None
    product: Ref | None = None
    price_plan: Ref | None = None
    subscription_item: Ref | None = None
    quantity: UsageQuantity | None = None
    unit_amount: SignedDecimal | None = None
    amount: Money
    tax: Money | None = None
    tax_rate: TaxRate | None = None
    service_start: date
    service_end: date
    proration: bool = False

    @model_validator(mode="after")
    def _period_and_currency(self) -> Self:
        if self.service_end <= self.service_start:
            raise ValueError(
                f"{self.label}: service_end {self.service_end} must be after service_start "
                f"{self.service_start} (the end is exclusive)"
            )
        if self.tax is not None and self.tax.currency != self.amount.currency:
            raise ValueError(
                f"{self.label}: tax currency {self.tax.currency} != amount currency "
                f"{self.amount.currency}"
            )
        return self

    @property
    def service_last_day(self) -> date:
        return self.service_end - timedelta(days=1)

    @property
    def service_days(self) -> int:
        return (self.service_end - self.service_start).days


def check_totals(
    label: str,
    currency: str,
    amounts: Sequence[Money],
    line_taxes: Sequence[Money | None],
    tax: Money,
    total: Money,
) -> None:
    """Raise unless all amounts are in ``currency`` and ``total == sum(amounts) + tax`` exactly.

    When every line states its tax, the line taxes must also add up to ``tax``.
    """
    for name, money in (("tax", tax), ("total", total)):
        if money.currency != currency:
            raise ValueError(f"{label}: {name} currency {money.currency} != {currency}")
    for index, (amount, line_tax) in enumerate(zip(amounts, line_taxes, strict=True)):
        if amount.currency != currency or (line_tax is not None and line_tax.currency != currency):
            raise ValueError(
                f"{label}: lines[{index}] currency {amount.currency} != currency {currency}"
            )
    subtotal = Money.sum(amounts, currency)
    if total != subtotal + tax:
        raise ValueError(
            f"{label}: total {total} != lines {subtotal.amount:f} + tax {tax.amount:f} {currency}"
        )
    if line_taxes and all(t is not None for t in line_taxes):
        line_tax_sum = Money.sum((t for t in line_taxes if t is not None), currency)
        if line_tax_sum != tax:
            raise ValueError(f"{label}: tax {tax} != sum of line taxes {line_tax_sum}")


class Invoice(Record):
    """A bill issued by billing; guaranteed: one currency and ``total == subtotal + tax``."""

    label_fields = ("number",)

    number: Identifier | None = None
    customer: Ref
    subscription: Ref | None = None
    legal_entity: Ref | None = None
    currency: CurrencyCode
    status: InvoiceStatus
    issued_at: UtcDateTime | None = None
    due_date: date | None = None
    lines: tuple[InvoiceLine, ...] = ()
    tax: Money
    total: Money
    amount_paid: Money | None = None
    credit_applied: Money | None = None
    """The customer's credit balance this invoice consumed when it was finalized (no cash)."""

    @model_validator(mode="after")
    def _totals_add_up(self) -> Self:
        check_totals(
            self.label,
            self.currency,
            [line.amount for line in self.lines],
            [line.tax for line in self.lines],
            self.tax,
            self.total,
        )
        if self.amount_paid is not None:
            if self.amount_paid.currency != self.currency:
                raise ValueError(
                    f"{self.label}: amount_paid currency {self.amount_paid.currency} != "
                    f"{self.currency}"
                )
            if self.amount_paid.is_negative():
                raise ValueError(f"{self.label}: amount_paid {self.amount_paid} must be >= 0")
        credit = self.credit_applied
        if credit is not None:
            if credit.currency != self.currency:
                raise ValueError(
                    f"{self.label}: credit_applied currency {credit.currency} != {self.currency}"
                )
            if credit.is_negative() or (credit.is_positive() and credit > self.total):
                raise ValueError(
                    f"{self.label}: credit_applied {credit} must be >= 0 and at most the total "
                    f"{self.total}"
                )
        return self

    @property
    def subtotal(self) -> Money:
        """Sum of the line amounts, before tax."""
        return Money.sum((line.amount for line in self.lines), self.currency)

    @property
    def amount_due(self) -> Money:
        """What is still owed: total minus amount paid and the credit balance it consumed."""
        paid = self.amount_paid if self.amount_paid is not None else Money.zero(self.currency)
        credit = self.credit_applied or Money.zero(self.currency)
        return self.total - paid - credit
