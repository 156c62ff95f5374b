"""Tax rates and the tax they put on invoices and credit notes, driven through the official SDK.

Expected amounts are derived here from the inputs with Stripe's rule for tax rates: tax per line on
the line's amount after discounts, rounded half up per line, ``total = net lines + exclusive tax``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
import stripe

from .conftest import make_customer

EUR_SEATS = (1050, 2350, 4150)  # 10.50, 23.50, 41.50: each 19 % ends in .5 of a cent


def vat(client: stripe.StripeClient, percentage: float = 19, **extra: Any) -> Any:
    params = {
        "display_name": "VAT",
        "percentage": percentage,
        "inclusive": False,
        "country": "DE",
        "jurisdiction": "DE",
        "tax_type": "vat",
        **extra,
    }
    return client.v1.tax_rates.create(params=params)


def prices(client: stripe.StripeClient, amounts: tuple[int, ...]) -> list[Any]:
    out = []
    for amount in amounts:
        product = client.v1.products.create(params={"name": f"Item {amount}"})
        out.append(
            client.v1.prices.create(
                params={
                    "product": product.id,
                    "currency": "eur",
                    "unit_amount": amount,
                    "recurring": {"interval": "month"},
                }
            )
        )
    return out


def half_up(amount: int, percent: str) -> int:
    exact = Decimal(amount) * Decimal(percent) / 100
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def subscribe(client: stripe.StripeClient, customer: Any, rate_ids: list[str]) -> Any:
    items = [{"price": p.id, "quantity": 1} for p in prices(client, EUR_SEATS)]
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": items, "default_tax_rates": rate_ids}
    )
    return client.v1.invoices.retrieve(sub.latest_invoice)


def test_tax_rate_crud_and_pagination(client: stripe.StripeClient) -> None:
    rate = vat(client, 19, description="VAT Germany", metadata={"q2c_tax_code": "DE-VAT-19"})
    assert (rate.object, rate.percentage, rate.inclusive, rate.active) == (
        "tax_rate",
        19,
        False,
        True,
    )
    assert rate.id.startswith("txr_") and rate.metadata["q2c_tax_code"] == "DE-VAT-19"
    assert client.v1.tax_rates.retrieve(rate.id).description == "VAT Germany"
    updated = client.v1.tax_rates.update(rate.id, params={"active": False, "display_name": "USt"})
    assert (updated.active, updated.display_name, updated.percentage) == (False, "USt", 19)
    others = [vat(client, p) for p in (7, 0, 8.25)]
    assert others[2].percentage == 8.25
    first = client.v1.tax_rates.list(params={"limit": 2})
    assert [r.id for r in first.data] == [others[2].id, others[1].id] and first.has_more
    rest = client.v1.tax_rates.list(params={"limit": 2, "starting_after": first.data[-1].id})
    assert [r.id for r in rest.data] == [others[0].id, rate.id] and not rest.has_more
    active = client.v1.tax_rates.list(params={"active": True, "limit": 10})
    assert rate.id not in {r.id for r in active.data} and len(active.data) == 3


def test_tax_rate_refuses_bad_input(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 19})
    assert missing.value.param == "inclusive"
    with pytest.raises(stripe.InvalidRequestError) as too_high:
        vat(client, 101)
    assert too_high.value.param == "percentage"
    rate = vat(client)
    with pytest.raises(stripe.InvalidRequestError) as immutable:
        client.v1.tax_rates.update(rate.id, params={"percentage": 20})
    assert immutable.value.param == "percentage"
    client.v1.tax_rates.update(rate.id, params={"active": False})
    customer = make_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as inactive:
        subscribe(client, customer, [rate.id])
    assert inactive.value.param == "default_tax_rates[0]"


def test_subscription_invoice_taxes_each_line_and_rounds_per_line(
    client: stripe.StripeClient,
) -> None:
    rate = vat(client)
    customer = make_customer(client)
    invoice = subscribe(client, customer, [rate.id])
    line_tax = [half_up(a, "19") for a in EUR_SEATS]
    assert sum(line_tax) != half_up(sum(EUR_SEATS), "19")  # per line differs from per document
    lines = sorted(invoice.lines.data, key=lambda line: line.amount)
    assert [[(t.amount, t.taxable_amount) for t in line.taxes] for line in lines] == [
        [(tax, amount)] for tax, amount in zip(line_tax, EUR_SEATS, strict=True)
    ]
    entry = lines[0].taxes[0]
    assert (entry.tax_behavior, entry.type, entry.tax_rate_details.tax_rate) == (
        "exclusive",
        "tax_rate_details",
        rate.id,
    )
    assert [(t.amount, t.taxable_amount) for t in invoice.total_taxes] == [
        (sum(line_tax), sum(EUR_SEATS))
    ]
    assert invoice.total_excluding_tax == sum(EUR_SEATS)
    assert invoice.total == invoice.amount_paid == sum(EUR_SEATS) + sum(line_tax)
    assert [r.id for r in invoice.default_tax_rates] == [rate.id]


@pytest.mark.parametrize(("status", "reason"), [("reverse", "reverse_charge"), ("exempt", None)])
def test_exempt_and_reverse_charge_customers_pay_no_tax(
    client: stripe.StripeClient, status: str, reason: str | None
) -> None:
    rate = vat(client, 0 if status == "reverse" else 19)
    customer = make_customer(client, tax_exempt=status)
    invoice = subscribe(client, customer, [rate.id])
    assert invoice.customer_tax_exempt == status
    assert invoice.total == invoice.total_excluding_tax == sum(EUR_SEATS)
    [total] = invoice.total_taxes
    assert (total.amount, total.taxable_amount) == (0, sum(EUR_SEATS))
    assert total.taxability_reason == (reason or "customer_exempt")


def test_item_and_invoice_item_rates_override_the_defaults(client: stripe.StripeClient) -> None:
    standard, reduced = vat(client, 19), vat(client, 7)
    customer = make_customer(client)
    seat, book = prices(client, (1000, 2000))
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [
                {"price": seat.id, "quantity": 1},
                {"price": book.id, "quantity": 1, "tax_rates": [reduced.id]},
            ],
            "default_tax_rates": [standard.id],
        }
    )
    assert [r.id for r in sub.default_tax_rates] == [standard.id]
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    by_amount = {
        line.amount: (line.taxes[0].amount, line.taxes[0].tax_rate_details.tax_rate)
        for line in invoice.lines.data
    }
    assert by_amount == {1000: (190, standard.id), 2000: (140, reduced.id)}
    assert invoice.total == 3000 + 190 + 140
    draft = client.v1.invoices.create(params={"customer": customer.id, "currency": "eur"})
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": draft.id,
            "amount": 2500,
            "currency": "eur",
            "tax_rates": [standard.id],
        }
    )
    assert client.v1.invoices.retrieve(draft.id).total == 2500 + 475


def test_credit_note_credits_the_line_tax(client: stripe.StripeClient) -> None:
    rate = vat(client)
    customer = make_customer(client)
    invoice = subscribe(client, customer, [rate.id])
    line = max(invoice.lines.data, key=lambda line: line.amount)
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "quantity": 1}],
        }
    )
    tax = half_up(line.amount, "19")
    assert (note.subtotal, note.total, note.total_excluding_tax) == (
        line.amount,
        line.amount + tax,
        line.amount,
    )
    assert [(t.amount, t.tax_rate_details.tax_rate) for t in note.total_taxes] == [(tax, rate.id)]
    [credited] = note.lines.data
    assert [r.id for r in credited.tax_rates] == [rate.id]
    assert client.v1.customers.retrieve(customer.id).balance == -(line.amount + tax)
