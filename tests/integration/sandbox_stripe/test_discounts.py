"""Coupons and subscription-item discounts, driven through the official SDK, exact to the cent.

Expected amounts are derived here from the inputs with the documented rules, never copied from
the emulator: a percent coupon takes round_half_up(line * percent / 100) from a line whose amount
stays gross; the invoice ``subtotal`` already has item discounts taken off (Stripe's description of
``invoice.subtotal``: "Item discounts are already incorporated"), ``total`` too; prorations are
net of the discount (Stripe's default ``proration_discounts: included``), rounded once per line,
with ``discount_amounts`` of 0.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
import stripe

from .conftest import DAY, T0, Sandbox, make_clock, make_customer

FEB_1 = T0 + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY
APR_1 = MAR_1 + 31 * DAY
SEAT = 4900  # 49.00 USD


def half_up(value: Fraction) -> int:
    """Round a non-negative exact amount to whole cents, halves up."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def percent_of(amount: int, percent: str) -> int:
    return half_up(Fraction(amount) * Fraction(Decimal(percent)) / 100)


def seat_price(client: stripe.StripeClient, unit_amount: int = SEAT) -> Any:
    product = client.v1.products.create(params={"name": f"Seat {unit_amount}"})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": unit_amount,
            "recurring": {"interval": "month"},
        }
    )


def subscribe(
    client: stripe.StripeClient,
    customer: Any,
    price: Any,
    quantity: int,
    discounts: list[dict[str, str]] | None = None,
) -> Any:
    item: dict[str, Any] = {"price": price.id, "quantity": quantity}
    if discounts is not None:
        item["discounts"] = discounts
    return client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [item], "expand": ["latest_invoice"]}
    )


def invoices(client: stripe.StripeClient, customer: Any) -> list[Any]:
    """The customer's invoices, oldest first."""
    return list(reversed(client.v1.invoices.list(params={"customer": customer.id}).data))


def discount_pairs(obj: Any) -> list[tuple[int, str]]:
    return [(d.amount, d.discount) for d in obj.discount_amounts]


# --- coupons ---------------------------------------------------------------------------------


def test_coupon_crud(client: stripe.StripeClient) -> None:
    coupon = client.v1.coupons.create(
        params={
            "id": "SEATS15",
            "percent_off": 15,
            "duration": "forever",
            "name": "15% off seats",
            "metadata": {"crm_deal": "D-1"},
        }
    )
    assert (coupon.id, coupon.object, coupon.percent_off, coupon.amount_off) == (
        "SEATS15",
        "coupon",
        15.0,
        None,
    )
    assert (coupon.duration, coupon.duration_in_months, coupon.currency) == ("forever", None, None)
    assert (coupon.times_redeemed, coupon.valid, coupon.metadata["crm_deal"]) == (0, True, "D-1")
    fixed = client.v1.coupons.create(
        params={
            "amount_off": 2500,
            "currency": "USD",
            "duration": "repeating",
            "duration_in_months": 3,
        }
    )
    assert len(fixed.id) == 8 and fixed.id != coupon.id
    assert (fixed.amount_off, fixed.currency, fixed.duration_in_months) == (2500, "usd", 3)
    assert client.v1.coupons.retrieve("SEATS15").name == "15% off seats"
    assert {c.id for c in client.v1.coupons.list().data} == {"SEATS15", fixed.id}

    updated = client.v1.coupons.update(
        "SEATS15", params={"name": "Deal D-1", "metadata": {"crm_deal": "", "owner": "ana"}}
    )
    assert (updated.name, updated.metadata.to_dict()) == ("Deal D-1", {"owner": "ana"})
    assert updated.percent_off == 15.0
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.coupons.update("SEATS15", params={"percent_off": 20})  # type: ignore[typeddict-unknown-key]
    assert (info.value.code, info.value.param) == ("parameter_unknown", "percent_off")

    deleted = client.v1.coupons.delete("SEATS15")
    assert (deleted.id, deleted.object, deleted.deleted) == ("SEATS15", "coupon", True)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.coupons.retrieve("SEATS15")
    assert (info.value.http_status, info.value.code) == (404, "resource_missing")
    assert [c.id for c in client.v1.coupons.list().data] == [fixed.id]
    again = client.v1.coupons.create(params={"id": "SEATS15", "percent_off": 20})
    assert (again.percent_off, again.duration) == (20.0, "once")


def test_coupon_validation_errors(client: stripe.StripeClient) -> None:
    client.v1.coupons.create(params={"id": "DUP", "percent_off": 10})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.coupons.create(params={"id": "DUP", "percent_off": 10})
    assert (info.value.http_status, info.value.code, info.value.param) == (
        400,
        "resource_already_exists",
        "id",
    )
    bad: list[tuple[dict[str, Any], str]] = [
        ({"percent_off": 12.345}, "percent_off"),
        ({"percent_off": 0}, "percent_off"),
        ({"percent_off": 100.5}, "percent_off"),
        ({"amount_off": 500}, "currency"),
        ({"percent_off": 10, "amount_off": 500, "currency": "usd"}, "amount_off"),
        ({"duration": "forever"}, "percent_off"),
        ({"percent_off": 10, "duration": "repeating"}, "duration_in_months"),
        ({"percent_off": 10, "duration": "once", "duration_in_months": 2}, "duration_in_months"),
        ({"percent_off": 10, "duration": "weekly"}, "duration"),
    ]
    for params, param in bad:
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.coupons.create(params=params)
        assert (info.value.http_status, info.value.param) == (400, param), params
    assert client.v1.coupons.create(params={"percent_off": 12.34}).percent_off == 12.34
    assert [c.id for c in client.v1.coupons.list().data if c.id == "DUP"] == ["DUP"]


def test_coupon_create_is_idempotent(sandbox: Sandbox) -> None:
    body = "percent_off=15&duration=forever"
    headers = {"Idempotency-Key": "deal-D-7-coupon"}
    status, _, first = sandbox.raw("POST", "/v1/coupons", body, headers)
    status2, replay_headers, second = sandbox.raw("POST", "/v1/coupons", body, headers)
    assert (status, status2, first, replay_headers["Idempotent-Replayed"]) == (
        200,
        200,
        second,
        "true",
    )
    _, _, listing = sandbox.raw("GET", "/v1/coupons")
    assert [c["id"] for c in listing["data"]] == [first["id"]]


# --- discounts on subscription items ---------------------------------------------------------


def test_unknown_or_unsupported_discount_is_refused_and_nothing_is_created(
    client: stripe.StripeClient,
) -> None:
    customer = make_customer(client)
    price = seat_price(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        subscribe(client, customer, price, 10, [{"coupon": "NO_SUCH"}])
    assert (info.value.http_status, info.value.code, info.value.param) == (
        400,
        "resource_missing",
        "items[0][discounts][0][coupon]",
    )
    assert "NO_SUCH" in str(info.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as info:
        subscribe(client, customer, price, 10, [{"promotion_code": "promo_1"}])
    assert info.value.param == "items[0][discounts][0][promotion_code]"
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    assert client.v1.invoices.list(params={"customer": customer.id}).data == []


def test_forever_percent_coupon_discounts_every_invoice(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = seat_price(client)
    coupon = client.v1.coupons.create(params={"percent_off": 15, "duration": "forever"})
    sub = subscribe(client, customer, price, 10, [{"coupon": coupon.id}])
    gross = 10 * SEAT
    off = percent_of(gross, "15")
    assert (gross, off) == (49000, 7350)  # the business case, derived above

    (discount_id,) = sub["items"].data[0].discounts
    assert discount_id.startswith("di_")
    invoice = sub.latest_invoice
    (line,) = invoice.lines.data
    assert (line.amount, line.discounts, discount_pairs(line)) == (
        gross,
        [discount_id],
        [(off, discount_id)],
    )
    assert invoice.discounts == []  # an item discount is not an invoice-level one
    assert [(d.amount, d.discount) for d in invoice.total_discount_amounts] == [(off, discount_id)]
    assert (invoice.subtotal, invoice.subtotal_excluding_tax) == (gross - off, gross - off)
    assert (invoice.total, invoice.total_excluding_tax) == (gross - off, gross - off)
    assert (invoice.status, invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (
        "paid",
        gross - off,
        gross - off,
        0,
    )
    intent = client.v1.payment_intents.list(params={"customer": customer.id}).data[0]
    assert (intent.status, intent.amount) == ("succeeded", 41650)

    item = client.v1.subscription_items.retrieve(
        sub["items"].data[0].id, params={"expand": ["discounts"]}
    )
    (discount,) = item.discounts
    assert (discount.id, discount.object, discount.source.type, discount.source.coupon) == (
        discount_id,
        "discount",
        "coupon",
        coupon.id,
    )
    assert (discount.subscription, discount.subscription_item, discount.customer) == (
        sub.id,
        item.id,
        customer.id,
    )
    assert (discount.start, discount.end, discount.invoice, discount.invoice_item) == (
        T0,
        None,
        None,
        None,
    )
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1

    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 3600})
    first, renewal = invoices(client, customer)
    assert first.id == invoice.id and renewal.billing_reason == "subscription_cycle"
    (line,) = renewal.lines.data
    assert (line.amount, discount_pairs(line), line.period.start) == (
        gross,
        [(off, discount_id)],
        FEB_1,
    )
    assert (renewal.total, renewal.amount_paid, renewal.status) == (
        gross - off,
        gross - off,
        "paid",
    )


def test_percent_discount_rounds_half_cents_up(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    price = seat_price(client, 4910)
    coupon = client.v1.coupons.create(params={"percent_off": 15, "duration": "forever"})
    invoice = subscribe(client, customer, price, 1, [{"coupon": coupon.id}]).latest_invoice
    exact = Fraction(4910 * 15, 100)
    assert exact == Fraction(1473, 2)  # 736.5 cents: half-up gives 737, half-even 736
    assert [d.amount for d in invoice.lines.data[0].discount_amounts] == [half_up(exact)] == [737]
    assert invoice.total == 4910 - 737


def test_once_coupon_discounts_the_first_invoice_only(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = seat_price(client)
    coupon = client.v1.coupons.create(params={"percent_off": 20, "duration": "once"})
    sub = subscribe(client, customer, price, 3, [{"coupon": coupon.id}])
    gross = 3 * SEAT
    assert sub.latest_invoice.total == gross - percent_of(gross, "20")
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1})
    _, renewal = invoices(client, customer)
    (line,) = renewal.lines.data
    assert (line.discounts, line.discount_amounts, renewal.total_discount_amounts) == ([], [], [])
    assert (renewal.subtotal, renewal.total) == (gross, gross)
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].discounts == []


def test_repeating_coupon_runs_for_its_months(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = seat_price(client)
    coupon = client.v1.coupons.create(
        params={
            "amount_off": 5000,
            "currency": "usd",
            "duration": "repeating",
            "duration_in_months": 2,
        }
    )
    sub = subscribe(client, customer, price, 2, [{"coupon": coupon.id}])
    item = client.v1.subscription_items.retrieve(
        sub["items"].data[0].id, params={"expand": ["discounts"]}
    )
    assert (item.discounts[0].start, item.discounts[0].end) == (T0, MAR_1)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": MAR_1})
    gross = 2 * SEAT
    totals = [(i.period_end, i.subtotal, i.total) for i in invoices(client, customer)]
    assert totals == [
        (T0, gross - 5000, gross - 5000),
        (FEB_1, gross - 5000, gross - 5000),
        (MAR_1, gross, gross),  # the period starting 1 March is past the discount's end
    ]


def test_mid_period_seat_increase_prorates_net_of_the_discount(
    client: stripe.StripeClient,
) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = seat_price(client)
    coupon = client.v1.coupons.create(params={"percent_off": 15, "duration": "forever"})
    sub = subscribe(client, customer, price, 10, [{"coupon": coupon.id}])
    item = sub["items"].data[0]
    (discount_id,) = item.discounts
    start, end = item.current_period_start, item.current_period_end
    halfway = start + (end - start) // 2
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": halfway})

    fraction = Fraction(end - halfway, end - start)
    net_unit = Fraction(SEAT) * (1 - Fraction(15, 100))
    credit = -half_up(net_unit * 10 * fraction)
    charge = half_up(net_unit * 15 * fraction)
    assert (credit, charge) == (-20825, 31238)  # 41650 / 2 and 62475 / 2 = 31237.5, half up

    preview = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "quantity": 15}],
                "proration_behavior": "always_invoice",
                "proration_date": halfway,
            },
        }
    )
    assert sorted(line.amount for line in preview.lines.data) == [credit, charge]
    assert preview.total == credit + charge

    client.v1.subscription_items.update(
        item.id, params={"quantity": 15, "proration_behavior": "always_invoice"}
    )
    update = invoices(client, customer)[-1]
    assert update.billing_reason == "subscription_update"
    assert sorted(line.amount for line in update.lines.data) == [credit, charge]
    for line in update.lines.data:
        assert line.parent.subscription_item_details.proration is True
        assert (line.discounts, discount_pairs(line)) == ([discount_id], [(0, discount_id)])
        assert line.period.start == halfway and line.period.end == end
    assert [(d.amount, d.discount) for d in update.total_discount_amounts] == [(0, discount_id)]
    assert (update.subtotal, update.total, update.amount_paid, update.status) == (
        credit + charge,
        credit + charge,
        credit + charge,
        "paid",
    )

    gross = 15 * SEAT
    upcoming = client.v1.invoices.create_preview(params={"subscription": sub.id})
    (line,) = upcoming.lines.data
    assert (line.amount, discount_pairs(line)) == (gross, [(percent_of(gross, "15"), discount_id)])
    assert upcoming.total == gross - percent_of(gross, "15")
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": end})
    renewal = invoices(client, customer)[-1]
    assert (renewal.total, renewal.amount_paid) == (upcoming.total, upcoming.total)


def test_items_without_discounts_are_unaffected(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    seats, support = seat_price(client), seat_price(client, 1999)
    coupon = client.v1.coupons.create(params={"percent_off": 15, "duration": "forever"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [
                {"price": seats.id, "quantity": 10, "discounts": [{"coupon": coupon.id}]},
                {"price": support.id, "quantity": 3},
            ],
            "expand": ["latest_invoice"],
        }
    )
    by_price = {line.pricing.price_details.price: line for line in sub.latest_invoice.lines.data}
    plain = by_price[support.id]
    assert (plain.amount, plain.discounts, plain.discount_amounts) == (3 * 1999, [], [])
    off = percent_of(10 * SEAT, "15")
    assert sub.latest_invoice.total == 10 * SEAT - off + 3 * 1999
    assert [i.discounts for i in sub["items"].data if i.price.id == support.id] == [[]]

    other = make_customer(client, email="plain@acme.example")
    bare = subscribe(client, other, seats, 10)
    invoice = bare.latest_invoice
    assert (invoice.subtotal, invoice.total, invoice.total_discount_amounts) == (49000, 49000, [])
    assert (invoice.lines.data[0].discount_amounts, invoice.lines.data[0].discounts) == ([], [])


def test_discounts_can_be_added_and_cleared_on_an_item(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = seat_price(client)
    sub = subscribe(client, customer, price, 4)
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    item = client.v1.subscription_items.update(
        sub["items"].data[0].id, params={"discounts": [{"coupon": coupon.id}]}
    )
    (discount_id,) = item.discounts
    assert (
        client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data == []
    )
    kept = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "discounts": [{"discount": discount_id}]}]}
    )
    assert kept["items"].data[0].discounts == [discount_id]
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1})
    assert invoices(client, customer)[-1].total == 4 * SEAT - percent_of(4 * SEAT, "10")

    cleared = client.v1.subscription_items.update(item.id, params={"discounts": ""})
    assert cleared.discounts == []
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": MAR_1})
    assert invoices(client, customer)[-1].total == 4 * SEAT


def test_subscription_level_amount_coupon_is_shared_over_the_lines(
    client: stripe.StripeClient,
) -> None:
    customer = make_customer(client)
    seats, support = seat_price(client), seat_price(client, 1000)
    coupon = client.v1.coupons.create(
        params={"amount_off": 5000, "currency": "usd", "duration": "forever"}
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seats.id, "quantity": 10}, {"price": support.id, "quantity": 2}],
            "discounts": [{"coupon": coupon.id}],
            "expand": ["latest_invoice"],
        }
    )
    (discount_id,) = sub.discounts
    invoice = sub.latest_invoice
    assert invoice.discounts == [discount_id]
    # 5000 split 49000 : 2000, each share floored, the remainder on the last line.
    first = 5000 * 49000 // 51000
    assert [discount_pairs(line) for line in invoice.lines.data] == [
        [(first, discount_id)],
        [(5000 - first, discount_id)],
    ]
    assert all(line.discounts == [] for line in invoice.lines.data)
    assert (invoice.subtotal, invoice.total) == (51000, 46000)


def test_expired_or_exhausted_coupon_cannot_be_redeemed(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = seat_price(client)
    single = client.v1.coupons.create(params={"percent_off": 5, "max_redemptions": 1})
    subscribe(client, customer, price, 1, [{"coupon": single.id}])
    assert (client.v1.coupons.retrieve(single.id).valid, single.valid) == (False, True)
    with pytest.raises(stripe.InvalidRequestError) as info:
        subscribe(client, customer, price, 1, [{"coupon": single.id}])
    assert (info.value.code, info.value.param) == (
        "coupon_expired",
        "items[0][discounts][0][coupon]",
    )
    lapsed = client.v1.coupons.create(params={"percent_off": 5, "redeem_by": T0 - 1})
    with pytest.raises(stripe.InvalidRequestError) as info:
        subscribe(client, customer, price, 1, [{"coupon": lapsed.id}])
    assert info.value.code == "coupon_expired"
    assert client.v1.coupons.retrieve(single.id).times_redeemed == 1


def test_deleted_coupon_keeps_discounting_existing_subscriptions(
    client: stripe.StripeClient,
) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = seat_price(client)
    coupon = client.v1.coupons.create(params={"percent_off": 15, "duration": "forever"})
    subscribe(client, customer, price, 10, [{"coupon": coupon.id}])
    client.v1.coupons.delete(coupon.id)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1})
    assert invoices(client, customer)[-1].total == 49000 - 7350


def test_credit_note_on_a_discounted_line_credits_the_net(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    price = seat_price(client)
    coupon = client.v1.coupons.create(params={"percent_off": 15, "duration": "forever"})
    invoice = subscribe(client, customer, price, 10, [{"coupon": coupon.id}]).latest_invoice
    (line,) = invoice.lines.data
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "quantity": 2}],
        }
    )
    gross, off = 2 * SEAT, percent_of(2 * SEAT, "15")
    (note_line,) = note.lines.data
    assert (note_line.amount, note_line.discount_amount) == (gross, off)
    assert (note.total, note.amount, note.discount_amount) == (gross - off,) * 2 + (off,)
    assert client.v1.customers.retrieve(customer.id).balance == -(gross - off)
