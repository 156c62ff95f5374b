"""One-time charges on a new subscription (``add_invoice_items``) and an invoice settled wholly
from the customer's credit balance, driven through the official stripe SDK."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from .conftest import DAY, T0, make_clock, make_customer, make_seat_price

FEB_1 = T0 + 31 * DAY


def _one_time_price(
    client: stripe.StripeClient, amount: int = 150000, currency: str = "usd"
) -> Any:
    product = client.v1.products.create(params={"name": "Onboarding"})
    return client.v1.prices.create(
        params={"product": product.id, "currency": currency, "unit_amount": amount}
    )


def test_one_off_items_are_billed_on_the_first_invoice_only(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    seat = make_seat_price(client, 4900)
    onboarding = _one_time_price(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seat.id, "quantity": 5}],
            "add_invoice_items": [{"price": onboarding.id, "metadata": {"line": "2"}}],
            "expand": ["latest_invoice"],
        }
    )
    # The subscription holds the recurring item only; the first invoice both charges.
    assert [i.price.id for i in sub["items"].data] == [seat.id]
    first = sub.latest_invoice
    assert (first.total, first.amount_paid, first.status) == (5 * 4900 + 150000, 174500, "paid")
    one_off = next(
        line for line in first.lines.data if line.pricing.price_details.price == onboarding.id
    )
    assert (one_off.amount, one_off.quantity, one_off.metadata.to_dict()) == (
        150000,
        1,
        {"line": "2"},
    )
    assert one_off.parent.type == "invoice_item_details"
    assert one_off.parent.invoice_item_details.subscription == sub.id
    assert (one_off.period.start, one_off.period.end) == (T0, FEB_1)
    assert (
        client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data == []
    )

    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 3600})
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    [renewal] = [i for i in invoices if i.id != first.id]
    assert renewal.total == 5 * 4900
    assert all(line.pricing.price_details.price == seat.id for line in renewal.lines.data)


def test_a_recurring_price_is_refused_as_a_one_off(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    seat = make_seat_price(client, 4900)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": seat.id, "quantity": 1}],
                "add_invoice_items": [{"price": seat.id}],
            }
        )
    assert refused.value.param == "add_invoice_items[0][price]"
    assert "type=one_time" in str(refused.value)
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []


def test_an_invoice_smaller_than_the_credit_is_settled_from_the_balance(
    client: stripe.StripeClient,
) -> None:
    """Stripe's semantics: a credit invoice moves to the balance; the next finalized invoice
    takes it (starting/ending balance), nothing is charged, and the rest stays a credit."""
    clock = make_clock(client)
    customer = make_customer(client, clock)
    seat = make_seat_price(client, 4900)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": seat.id, "quantity": 5}]}
    )
    item = sub["items"].data[0]
    client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "always_invoice"},
    )
    assert client.v1.customers.retrieve(customer.id).balance == -9800
    client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": item.id, "quantity": 4}], "proration_behavior": "always_invoice"},
    )
    settled = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert (settled.total, settled.starting_balance, settled.ending_balance) == (4900, -9800, -4900)
    assert (settled.amount_due, settled.amount_paid, settled.status) == (0, 0, "paid")
    assert client.v1.customers.retrieve(customer.id).balance == -4900


def test_a_one_off_takes_its_own_coupon(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    seat = make_seat_price(client, 4900)
    onboarding = _one_time_price(client)
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seat.id, "quantity": 1}],
            "add_invoice_items": [{"price": onboarding.id, "discounts": [{"coupon": coupon.id}]}],
            "expand": ["latest_invoice"],
        }
    )
    first = sub.latest_invoice
    one_off = next(
        line for line in first.lines.data if line.pricing.price_details.price == onboarding.id
    )
    assert one_off.amount == 150000
    assert [d.amount for d in one_off.discount_amounts] == [15000]
    assert first.total == 4900 + 135000
