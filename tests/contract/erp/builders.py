"""Canonical records for the ERP scenarios: valid by construction, unique per test."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from quote2cash.canonical import (
    Address,
    CreditMemo,
    CreditMemoLine,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    Order,
    OrderLine,
    Payment,
    PaymentStatus,
    Ref,
)

ADDRESSES = {
    "US": Address(line1="500 Congress Ave", city="Austin", postal_code="78701", country="US"),
    "DE": Address(line1="Hauptstrasse 5", city="München", postal_code="80331", country="DE"),
}


def customer(unique: str, entity: str = "DE", **changes: object) -> Customer:
    values: dict[str, object] = {
        "global_id": f"cus-{unique}",
        "name": f"Contract Customer {unique}",
        "email": f"billing-{unique}@example.com",
        "address": ADDRESSES[entity],
    }
    values.update(changes)
    return Customer.model_validate(values)


def service_period() -> tuple[dt.date, dt.date]:
    """Twelve months from the first of next month: [start, end)."""
    today = dt.datetime.now(dt.UTC).date()
    start = dt.date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    return start, dt.date(start.year + 1, start.month, 1)


def item(code: str) -> Ref:
    return Ref.external("erp", code)


def order(unique: str, customer_id: str, currency: str, code: str, **changes: object) -> Order:
    start, end = service_period()
    values: dict[str, object] = {
        "number": f"SO-{unique}",
        "customer": Ref(global_id=f"cus-{unique}", external_ids={"erp": customer_id}),
        "currency": currency,
        "start_date": start,
        "end_date": end,
        "lines": (
            OrderLine(
                product=item(code),
                quantity=3,
                unit_price=Money("33.33", currency),
                amount=Money("99.99", currency),
            ),
        ),
    }
    values.update(changes)
    return Order.model_validate(values)


def invoice_lines(currency: str, code: str) -> tuple[InvoiceLine, ...]:
    """33.33 x 3 for the period and a -12.34 proration credit over its second half."""
    start, end = service_period()
    return (
        InvoiceLine(
            description="Platform seats",
            product=item(code),
            quantity=Decimal(3),
            unit_amount=Decimal("33.33"),
            amount=Money("99.99", currency),
            service_start=start,
            service_end=end,
        ),
        InvoiceLine(
            description="Unused time (proration)",
            product=item(code),
            quantity=Decimal(1),
            unit_amount=Decimal("-12.34"),
            amount=Money("-12.34", currency),
            service_start=start + dt.timedelta(days=180),
            service_end=end,
            proration=True,
        ),
    )


def line_tax(line: InvoiceLine, rate: Decimal) -> Money:
    """A line's tax as billing computes it: rate x amount, rounded half up per line."""
    return Money.quantize(line.amount.amount * rate, line.amount.currency)


def invoice(
    unique: str,
    customer_id: str,
    currency: str,
    code: str,
    *,
    tax_rate: Decimal | None = None,
    tax_off_by: str = "0",
    lines: tuple[InvoiceLine, ...] | None = None,
    number: str | None = None,
) -> Invoice:
    """An open invoice; with ``tax_rate`` each line carries its tax and the invoice their sum
    (plus ``tax_off_by``, to make a tax the ERP must refuse)."""
    lines = lines if lines is not None else invoice_lines(currency, code)
    tax = Money(tax_off_by, currency)
    if tax_rate is not None:
        taxed = tuple(line.model_copy(update={"tax": line_tax(line, tax_rate)}) for line in lines)
        lines = taxed if tax.is_zero() else lines
        tax = tax + Money.sum((line_tax(line, tax_rate) for line in taxed), currency)
    subtotal = Money.sum((line.amount for line in lines), currency)
    return Invoice(
        number=number or f"INV-{unique}",
        customer=Ref(global_id=f"cus-{unique}", external_ids={"erp": customer_id}),
        currency=currency,
        status=InvoiceStatus.OPEN,
        issued_at=dt.datetime.now(dt.UTC),
        lines=lines,
        tax=tax,
        total=subtotal + tax,
    )


def payment(amount: Money, **changes: object) -> Payment:
    values: dict[str, object] = {
        "amount": amount,
        "status": PaymentStatus.SUCCEEDED,
        "created_at": dt.datetime.now(dt.UTC),
    }
    values.update(changes)
    return Payment.model_validate(values)


def credit_memo(unique: str, erp_invoice: str, amount: Money) -> CreditMemo:
    return CreditMemo(
        number=f"CN-{unique}",
        customer=Ref.to(f"cus-{unique}"),
        invoice=Ref.external("erp", erp_invoice),
        currency=amount.currency,
        issued_at=dt.datetime.now(dt.UTC),
        lines=(CreditMemoLine(description="Goodwill credit", amount=amount),),
        tax=Money.zero(amount.currency),
        total=amount,
    )


def refund(amount: Money, refunded: Money, billing_id: str, **changes: object) -> Payment:
    """Billing payment ``billing_id`` of ``amount``, ``refunded`` of it so far (cumulative)."""
    values: dict[str, object] = {
        "status": PaymentStatus.REFUNDED,
        "amount_refunded": refunded,
        "external_ids": {"billing": billing_id},
    }
    values.update(changes)
    return payment(amount, **values)
