"""Stripe shapes -> canonical: taxes, discounts, currencies, legacy shapes, event names."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from quote2cash.canonical import Money, RecordValidationError
from quote2cash.connectors.stripe import EVENT_TYPES
from quote2cash.connectors.stripe.mapping import (
    billing_event,
    hub_event_type,
    invoice_from_stripe,
    price_plan_from_stripe,
    service_dates,
)

JAN_1 = 1767225600
FEB_1 = JAN_1 + 31 * 86400


def _line(amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"il_{amount}",
        "amount": amount,
        "currency": "eur",
        "quantity": 1,
        "period": {"start": JAN_1, "end": FEB_1},
        "pricing": {"price_details": {"price": "price_1", "product": "prod_1"}},
        "parent": {"subscription_item_details": {"subscription_item": "si_1", "proration": False}},
        **extra,
    }


def _invoice(lines: list[dict[str, Any]], total: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": "in_1",
        "object": "invoice",
        "currency": "eur",
        "customer": "cus_1",
        "status": "open",
        "total": total,
        "amount_paid": 0,
        "lines": {"data": lines, "has_more": False},
        "parent": {"subscription_details": {"subscription": "sub_1"}},
        **extra,
    }


def test_exclusive_tax_and_discount() -> None:
    line = _line(
        10000,
        discount_amounts=[{"amount": 1000, "discount": "di_1"}],
        taxes=[{"amount": 1710, "tax_behavior": "exclusive"}],
    )
    invoice = invoice_from_stripe(
        _invoice([line], 10710, total_taxes=[{"amount": 1710, "tax_behavior": "exclusive"}])
    )
    assert invoice.lines[0].amount == Money("90.00", "EUR")
    assert invoice.lines[0].tax == invoice.tax == Money("17.10", "EUR")
    assert invoice.total == Money("107.10", "EUR")
    assert invoice.subscription is not None and invoice.subscription.id_in("billing") == "sub_1"


def test_inclusive_tax_is_taken_out_of_the_line() -> None:
    line = _line(11900, taxes=[{"amount": 1900, "tax_behavior": "inclusive"}])
    invoice = invoice_from_stripe(
        _invoice([line], 11900, total_taxes=[{"amount": 1900, "tax_behavior": "inclusive"}])
    )
    assert invoice.lines[0].amount == Money("100.00", "EUR")
    assert (invoice.tax, invoice.total) == (Money("19.00", "EUR"), Money("119.00", "EUR"))


def test_currencies_use_stripe_exponents() -> None:
    for currency, units, expected in (
        ("jpy", 1500, "1500"),
        ("isk", 1500, "15"),
        ("kwd", 1500, "1.500"),
    ):
        line = _line(units, currency=currency)
        invoice = invoice_from_stripe(_invoice([line], units, currency=currency))
        assert invoice.total == Money(expected, currency.upper())


def test_a_total_that_does_not_add_up_is_refused() -> None:
    with pytest.raises(RecordValidationError, match="total"):
        invoice_from_stripe(_invoice([_line(1000)], 1001))


def test_localstripe_2017_shapes() -> None:
    line = {
        "id": "il_old",
        "amount": -500,
        "currency": "eur",
        "quantity": 2,
        "period": {"start": JAN_1, "end": FEB_1},
        "plan": {"id": "plan_1", "amount": 250, "product": "prod_1", "object": "plan"},
        "proration": True,
        "subscription": "sub_old",
        "subscription_item": "si_old",
        "tax_amounts": [],
    }
    invoice = invoice_from_stripe(
        {
            "id": "in_old",
            "currency": "eur",
            "customer": "cus_1",
            "status": "paid",
            "subscription": "sub_old",
            "total": -500,
            "tax": 0,
            "amount_paid": 0,
            "lines": {"data": [line]},
        }
    )
    (mapped,) = invoice.lines
    assert mapped.proration and mapped.amount == Money("-5.00", "EUR")
    assert mapped.unit_amount == Decimal("2.5")
    assert mapped.price_plan is not None and mapped.price_plan.id_in("billing") == "plan_1"
    assert mapped.subscription_item is not None
    assert invoice.subscription is not None and invoice.subscription.id_in("billing") == "sub_old"


def test_service_dates_are_contiguous_and_at_least_one_day() -> None:
    mid_day = JAN_1 + 3 * 3600 + 7 * 60
    first = service_dates(mid_day, mid_day + 31 * 86400)
    second = service_dates(mid_day + 31 * 86400, mid_day + 59 * 86400)
    assert first == (date(2026, 1, 1), date(2026, 2, 1))
    assert second[0] == first[1]
    assert service_dates(mid_day, mid_day) == (date(2026, 1, 1), date(2026, 1, 2))


def test_month_year_and_one_time_per_unit_prices_are_plans() -> None:
    base = {
        "id": "price_1",
        "object": "price",
        "currency": "usd",
        "product": "prod_1",
        "unit_amount": 1999,
        "unit_amount_decimal": "1999",
        "billing_scheme": "per_unit",
        "lookup_key": "pro_monthly",
        "metadata": {"per_seat": "true"},
        "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
    }
    plan = price_plan_from_stripe(base)
    assert plan is not None
    assert (plan.unit_amount, plan.currency, plan.per_seat) == (Decimal("19.99"), "USD", True)
    assert plan.external_ids == {"billing": "price_1", "lookup_key": "pro_monthly"}
    one_time = price_plan_from_stripe({**base, "recurring": None, "metadata": {}})
    assert one_time is not None and one_time.interval is None
    assert one_time.amount_for(2).amount == Decimal("39.98")
    assert price_plan_from_stripe({**base, "billing_scheme": "tiered"}) is None
    weekly = {**base, "recurring": {"interval": "week", "usage_type": "licensed"}}
    assert price_plan_from_stripe(weekly) is None
    legacy = {
        "id": "plan_1",
        "object": "plan",
        "currency": "eur",
        "product": "prod_1",
        "amount": 1500,
        "interval": "year",
        "usage_type": "licensed",
    }
    mapped = price_plan_from_stripe(legacy)
    assert mapped is not None and (mapped.interval, mapped.unit_amount) == ("year", Decimal(15))


def _sub(quantity: int, start: int = JAN_1, status: str = "active") -> dict[str, Any]:
    return {
        "id": "sub_1",
        "object": "subscription",
        "status": status,
        "customer": "cus_1",
        "cancel_at_period_end": False,
        "items": {
            "data": [
                {
                    "id": "si_1",
                    "quantity": quantity,
                    "price": {"id": "price_1"},
                    "current_period_start": start,
                }
            ]
        },
    }


def test_subscription_updates_get_business_names() -> None:
    updated = "customer.subscription.updated"
    amended = _sub(5)
    assert hub_event_type(updated, amended, {"items": _sub(3)["items"]}) == (
        "billing.subscription.amended"
    )
    assert hub_event_type(updated, _sub(3, FEB_1), {"items": _sub(3)["items"]}) == (
        "billing.subscription.renewed"
    )
    assert hub_event_type(updated, _sub(3), {"current_period_start": JAN_1 - 1}) == (
        "billing.subscription.renewed"
    )
    scheduled = {**_sub(3), "cancel_at_period_end": True}
    assert hub_event_type(updated, scheduled, {"cancel_at_period_end": False}) == (
        "billing.subscription.cancel_scheduled"
    )
    assert hub_event_type(updated, _sub(3, status="past_due"), {"status": "active"}) == (
        "billing.subscription.past_due"
    )
    assert hub_event_type(updated, _sub(3), {"metadata": {}}) == "billing.subscription.updated"
    assert hub_event_type("customer.subscription.created", _sub(3)) == (
        "billing.subscription.activated"
    )
    assert hub_event_type("customer.subscription.created", _sub(3, status="incomplete")) == (
        "billing.subscription.created"
    )
    assert hub_event_type("payment_intent.succeeded", {}) == (
        "billing.stripe.payment_intent.succeeded"
    )
    assert EVENT_TYPES["invoice.payment_failed"] == "billing.payment.failed"


MAR_1 = FEB_1 + 28 * 86400


def _basil_item(quantity: int, start: int, end: int, price: str = "price_1") -> dict[str, Any]:
    """A subscription item as Stripe (2025-03-31.basil and later) serves it: the period is here."""
    return {
        "id": "si_1",
        "object": "subscription_item",
        "created": JAN_1,
        "current_period_start": start,
        "current_period_end": end,
        "discounts": [],
        "metadata": {},
        "plan": {"id": price, "object": "plan", "amount": 1000, "interval": "month"},
        "price": {"id": price, "object": "price", "unit_amount": 1000, "type": "recurring"},
        "quantity": quantity,
        "subscription": "sub_1",
        "tax_rates": [],
    }


def _basil_sub(*items: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return {
        "id": "sub_1",
        "object": "subscription",
        "status": status,
        "customer": "cus_1",
        "cancel_at_period_end": False,
        "items": {
            "object": "list",
            "data": list(items),
            "has_more": False,
            "total_count": len(items),
            "url": "/v1/subscription_items?subscription=sub_1",
        },
        "latest_invoice": "in_2",
        "plan": items[0]["plan"],
        "quantity": items[0]["quantity"],
    }


def _updated(obj: dict[str, Any], previous: dict[str, Any]) -> str:
    """The hub's name for a ``customer.subscription.updated`` event as Stripe delivers it."""
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": FEB_1,
        "data": {"object": obj, "previous_attributes": previous},
    }
    return billing_event(event).type


def test_stripe_shaped_renewals_are_renewed_and_seat_changes_amended() -> None:
    """Payloads shaped as Stripe sends them: a changed list comes whole under
    ``previous_attributes.items.data`` (basil: with each item's old period); older API versions
    keep the period on the subscription."""
    jan = _basil_item(3, JAN_1, FEB_1)
    feb = _basil_item(3, FEB_1, MAR_1)
    renewed = {"items": {"data": [jan]}, "latest_invoice": "in_1"}
    assert _updated(_basil_sub(feb), renewed) == "billing.subscription.renewed"
    # older API versions: the period on the subscription, no items in previous_attributes
    legacy = {**_sub(3), "current_period_start": FEB_1, "current_period_end": MAR_1}
    legacy_previous = {
        "current_period_start": JAN_1,
        "current_period_end": FEB_1,
        "latest_invoice": "in_1",
    }
    assert _updated(legacy, legacy_previous) == "billing.subscription.renewed"
    # seats changed mid-period: the items come whole, the period unmoved
    more = _basil_item(5, JAN_1, FEB_1)
    amended = {"items": {"data": [jan]}, "quantity": 3}
    assert _updated(_basil_sub(more), amended) == "billing.subscription.amended"
    legacy_items = {"data": [{k: v for k, v in jan.items() if "period" not in k}]}
    assert _updated(_basil_sub(more), {"items": legacy_items, "quantity": 3}) == (
        "billing.subscription.amended"
    )
    # another price for the same seats is an amendment, never a renewal
    swapped = _basil_item(3, JAN_1, FEB_1, price="price_2")
    assert _updated(_basil_sub(swapped), {"items": {"data": [jan]}, "plan": jan["plan"]}) == (
        "billing.subscription.amended"
    )
    # an item added (the list's total_count changes too)
    addon = {**_basil_item(1, JAN_1, FEB_1, price="price_9"), "id": "si_2"}
    added = {"items": {"data": [jan], "total_count": 1}}
    assert _updated(_basil_sub(jan, addon), added) == "billing.subscription.amended"
    # a new phase at the boundary changes seats and period at once: the seats win
    assert _updated(_basil_sub(_basil_item(4, FEB_1, MAR_1)), renewed) == (
        "billing.subscription.amended"
    )
    # only an item's metadata changed: neither renewed nor amended
    tagged = {**jan, "metadata": {"note": "x"}}
    assert _updated(_basil_sub(tagged), {"items": {"data": [jan]}}) == (
        "billing.subscription.updated"
    )
    # a trial's end moves the period and the status: the contract is activated
    trial_end = {"items": {"data": [jan]}, "latest_invoice": "in_1", "status": "trialing"}
    assert _updated(_basil_sub(feb), trial_end) == "billing.subscription.activated"
    # malformed previous items from outside are named, never a crash (billing is read anyway)
    for odd in ("abc", {"data": [1, "x"]}, {"data": "xy"}, {"data": [{"id": [1], "quantity": 3}]}):
        assert _updated(_basil_sub(feb), {"items": odd}).startswith("billing.subscription.")


def test_event_subject_prefers_the_subscription_then_the_customer() -> None:
    def event(obj: dict[str, Any]) -> dict[str, Any]:
        return {"id": "evt_1", "type": "x.y", "created": JAN_1, "data": {"object": obj}}

    assert billing_event(event(_sub(1))).subject == "sub_1"
    invoice = {"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_9"}
    assert billing_event(event(invoice)).subject == "sub_9"
    one_off = {"id": "in_2", "object": "invoice", "customer": "cus_1", "parent": None}
    assert billing_event(event(one_off)).subject == "cus_1"
    assert billing_event(event({"id": "cus_7", "object": "customer"})).subject == "cus_7"
    price = {"id": "price_1", "object": "price", "unit_amount_decimal": Decimal("12.5")}
    mapped = billing_event(event(price))
    assert mapped.subject == "price_1"
    assert mapped.data["object"]["unit_amount_decimal"] == "12.5"


@pytest.mark.parametrize(
    ("total", "starting", "ending", "paid", "applied", "due"),
    [
        (4900, -9799, -4899, 0, "49.00", "0.00"),  # settled wholly from the credit balance
        (24500, -9800, 0, 14700, "98.00", "0.00"),  # part credit, the rest by card
        (24500, -9800, 0, 0, "98.00", "147.00"),  # part credit, the rest still owed
        (-9800, 0, -9800, 0, "0.00", "-98.00"),  # a credit invoice adds to the balance
        (24500, 0, 0, 0, "0.00", "245.00"),  # no balance
        (24500, 0, None, 0, "0.00", "245.00"),  # a draft: no balance applied yet
    ],
)
def test_the_credit_balance_an_invoice_consumed(
    total: int, starting: int, ending: int | None, paid: int, applied: str, due: str
) -> None:
    invoice = invoice_from_stripe(
        _invoice(
            [_line(total)],
            total,
            starting_balance=starting,
            ending_balance=ending,
            amount_paid=paid,
        )
    )
    assert invoice.credit_applied == Money(applied, "EUR")
    assert invoice.amount_due == Money(due, "EUR")


@pytest.mark.parametrize(
    ("obj", "number"),
    [
        ({"id": "sub_1", "object": "subscription", "metadata": {"contract_number": "C-9"}}, "C-9"),
        ({"id": "sub_2", "object": "subscription", "metadata": {}}, None),
        (
            {
                "id": "in_1",
                "object": "invoice",
                "parent": {"subscription_details": {"metadata": {"contract_number": "C-8"}}},
            },
            "C-8",
        ),
        (
            {
                "id": "in_2",
                "object": "invoice",
                "subscription_details": {"metadata": {"contract_number": "C-7"}},
            },
            "C-7",
        ),
        ({"id": "in_3", "object": "invoice", "metadata": {"contract_number": "C-6"}}, None),
        ({"id": "ch_1", "object": "charge", "customer": "cus_1"}, None),
    ],
)
def test_billing_events_carry_their_contract_in_canonical_keys(
    obj: dict[str, Any], number: str | None
) -> None:
    """Flows read ``object_type``, ``object_id``, ``customer`` and ``contract_number``, never
    the snapshot: a subscription's own metadata, an invoice's subscription details (both
    shapes), nothing else (an invoice's own metadata is not the hub's)."""
    event = billing_event({"id": "evt_1", "type": "x.y", "created": JAN_1, "data": {"object": obj}})
    assert event.data["contract_number"] == number
    assert (event.data["object_type"], event.data["object_id"]) == (obj["object"], obj["id"])
