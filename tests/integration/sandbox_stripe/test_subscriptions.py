"""Subscription lifecycle with per-seat quantities, each proration_behavior, renewals and cancels.

Expected proration amounts are worked by hand from Stripe's seconds-based rule (period January
2026 = 31 days; credit unused time on the old quantity, charge remaining time on the new one):
5 -> 7 seats of 10.00 on day 10: -round(5000 * 21/31) = -3387 and +round(7000 * 21/31) = +4742.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from .conftest import DAY, T0, make_clock, make_customer, make_seat_price

FEB_1 = T0 + 31 * DAY
MAR_1 = FEB_1 + 28 * DAY


def _setup(
    client: stripe.StripeClient,
    quantity: int = 5,
    unit_amount: int = 1000,
    pm: str = "pm_card_visa",
) -> tuple[Any, Any, Any]:
    clock = make_clock(client)
    customer = make_customer(client, clock, pm=pm)
    price = make_seat_price(client, unit_amount)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": quantity}],
            "expand": ["latest_invoice"],
        }
    )
    return clock, customer, sub


def _pending(client: stripe.StripeClient, customer: str) -> list[int]:
    items = client.v1.invoice_items.list(params={"customer": customer, "pending": True})
    return sorted(i.amount for i in items.data)


def test_create_charges_first_period(client: stripe.StripeClient) -> None:
    _, customer, sub = _setup(client)
    assert sub.status == "active"
    invoice = sub.latest_invoice
    assert invoice.status == "paid" and invoice.billing_reason == "subscription_create"
    assert (invoice.total, invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (
        5000,
        5000,
        5000,
        0,
    )
    (line,) = invoice.lines.data
    assert (line.amount, line.quantity, line.period.start, line.period.end) == (5000, 5, T0, FEB_1)
    item = sub["items"].data[0]
    assert (item.quantity, item.current_period_start, item.current_period_end) == (5, T0, FEB_1)
    assert invoice.number.endswith("-0001")
    intent = client.v1.payment_intents.list(params={"customer": customer.id}).data[0]
    assert intent.status == "succeeded" and intent.amount == 5000


def test_quantity_up_with_create_prorations_lands_on_renewal(client: stripe.StripeClient) -> None:
    clock, customer, sub = _setup(client)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 10 * DAY})
    item = sub["items"].data[0]
    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "quantity": 7}],
            "proration_behavior": "create_prorations",
        },
    )
    assert updated["items"].data[0].quantity == 7
    pending = client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data
    assert sorted(i.amount for i in pending) == [-3387, 4742]
    assert all(
        i.proration and i.period.start == T0 + 10 * DAY and i.period.end == FEB_1 for i in pending
    )
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 3600})
    renewal = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert renewal.billing_reason == "subscription_cycle"
    assert sorted(line.amount for line in renewal.lines.data) == [-3387, 4742, 7000]
    assert (renewal.total, renewal.amount_paid, renewal.status) == (8355, 8355, "paid")
    assert _pending(client, customer.id) == []
    refreshed = client.v1.subscriptions.retrieve(sub.id)
    assert refreshed["items"].data[0].current_period_end == MAR_1


def test_proration_none_changes_quantity_without_charges(client: stripe.StripeClient) -> None:
    clock, customer, sub = _setup(client)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 10 * DAY})
    item = client.v1.subscription_items.update(
        sub["items"].data[0].id, params={"quantity": 9, "proration_behavior": "none"}
    )
    assert item.quantity == 9
    assert _pending(client, customer.id) == []
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1})
    renewal = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert [line.amount for line in renewal.lines.data] == [9000]


def test_always_invoice_bills_immediately(client: stripe.StripeClient) -> None:
    _, customer, sub = _setup(client)
    client.v1.subscription_items.update(
        sub["items"].data[0].id,
        params={
            "quantity": 7,
            "proration_behavior": "always_invoice",
            "proration_date": T0 + 10 * DAY,
        },
    )
    invoice = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert invoice.billing_reason == "subscription_update"
    assert sorted(line.amount for line in invoice.lines.data) == [-3387, 4742]
    assert all(line.parent.subscription_item_details.proration for line in invoice.lines.data)
    assert (invoice.total, invoice.amount_paid, invoice.status) == (1355, 1355, "paid")
    assert _pending(client, customer.id) == []


def test_always_invoice_downgrade_credits_balance_then_next_invoice(
    client: stripe.StripeClient,
) -> None:
    clock, customer, sub = _setup(client)
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "quantity": 3}],
            "proration_behavior": "always_invoice",
            "proration_date": T0 + 10 * DAY,
        },
    )
    credit = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert (credit.total, credit.amount_due, credit.status, credit.ending_balance) == (
        -1355,
        0,
        "paid",
        -1355,
    )
    assert client.v1.customers.retrieve(customer.id).balance == -1355
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1})
    renewal = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert (renewal.total, renewal.starting_balance, renewal.amount_due, renewal.amount_paid) == (
        3000,
        -1355,
        1645,
        1645,
    )
    assert client.v1.customers.retrieve(customer.id).balance == 0


def test_proration_rounds_each_line_to_the_cent(client: stripe.StripeClient) -> None:
    _, customer, sub = _setup(client, unit_amount=999)
    at = T0 + 7 * DAY + 3 * 3600
    client.v1.subscriptions.update(
        sub.id,
        params={"items": [{"id": sub["items"].data[0].id, "quantity": 8}], "proration_date": at},
    )
    # remaining 2062800 s of 2678400 s: 4995 * r = 3846.93 -> 3847; 7992 * r = 6155.09 -> 6155
    assert _pending(client, customer.id) == [-3847, 6155]


def test_add_and_remove_items_prorate(client: stripe.StripeClient) -> None:
    _, customer, sub = _setup(client)
    addon = make_seat_price(client, 3100)
    added = client.v1.subscription_items.create(
        params={
            "subscription": sub.id,
            "price": addon.id,
            "quantity": 1,
            "proration_date": T0 + 10 * DAY,
        }
    )
    assert _pending(client, customer.id) == [2100]  # 3100 * 21/31
    client.v1.subscription_items.delete(added.id, params={"proration_date": T0 + 20 * DAY})
    assert _pending(client, customer.id) == [-1100, 2100]  # 3100 * 11/31 = 1100
    assert len(client.v1.subscriptions.retrieve(sub.id)["items"].data) == 1


def test_cancel_at_period_end_then_clock_ends_it(client: stripe.StripeClient) -> None:
    clock, customer, sub = _setup(client)
    updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert (
        updated.cancel_at_period_end is True
        and updated.cancel_at == FEB_1
        and updated.status == "active"
    )
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + DAY})
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert (ended.status, ended.ended_at) == ("canceled", FEB_1)
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1
    deleted = client.v1.events.list(params={"type": "customer.subscription.deleted"}).data
    assert [e.data.object.id for e in deleted] == [sub.id]


def test_cancel_now_with_proration_credit_invoice(client: stripe.StripeClient) -> None:
    clock, customer, sub = _setup(client)
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 10 * DAY})
    canceled = client.v1.subscriptions.cancel(sub.id, params={"prorate": True, "invoice_now": True})
    assert (canceled.status, canceled.canceled_at, canceled.ended_at) == (
        "canceled",
        T0 + 10 * DAY,
        T0 + 10 * DAY,
    )
    final = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert (final.total, final.amount_due) == (-3387, 0)
    assert client.v1.customers.retrieve(customer.id).balance == -3387
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(
            sub.id, params={"items": [{"id": sub["items"].data[0].id, "quantity": 2}]}
        )
    listed = client.v1.subscriptions.list(params={"customer": customer.id})
    assert listed.data == []
    assert [
        s.id
        for s in client.v1.subscriptions.list(
            params={"customer": customer.id, "status": "all"}
        ).data
    ] == [sub.id]


def test_declined_first_payment_leaves_subscription_incomplete(client: stripe.StripeClient) -> None:
    _, customer, sub = _setup(client, pm="pm_card_chargeCustomerFail")
    assert sub.status == "incomplete"
    assert (sub.latest_invoice.status, sub.latest_invoice.attempt_count) == ("open", 1)
    price = sub["items"].data[0].price.id
    with pytest.raises(stripe.CardError) as info:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price}],
                "payment_behavior": "error_if_incomplete",
            }
        )
    assert info.value.code == "card_declined" and info.value.http_status == 402


def test_renewal_decline_makes_subscription_past_due(client: stripe.StripeClient) -> None:
    clock, customer, sub = _setup(client)
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer.id}
    )
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 60})
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    renewal = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert (renewal.status, renewal.amount_remaining, renewal.attempted) == ("open", 5000, True)
    types = [e.type for e in client.v1.events.list(params={"limit": 100}).data]
    assert "invoice.payment_failed" in types and "payment_intent.payment_failed" in types
    paid = client.v1.invoices.pay(renewal.id, params={"payment_method": "pm_card_visa"})
    assert paid.status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_clock_advance_over_two_periods_renews_twice(client: stripe.StripeClient) -> None:
    clock, _, sub = _setup(client, quantity=2)
    advanced = client.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": MAR_1 + DAY}
    )
    assert advanced.status == "ready" and advanced.frozen_time == MAR_1 + DAY
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [(i.billing_reason, i.status, i.amount_paid, i.period_start) for i in invoices] == [
        ("subscription_cycle", "paid", 2000, FEB_1),
        ("subscription_cycle", "paid", 2000, T0),
        ("subscription_create", "paid", 2000, T0),
    ]
    assert [line.period.end for line in invoices[0].lines.data] == [MAR_1 + 31 * DAY]
    paid_events = client.v1.events.list(params={"type": "invoice.paid"}).data
    assert {e.data.object.id for e in paid_events} == {i.id for i in invoices}
    assert paid_events[0].created == MAR_1


def test_send_invoice_subscription_is_active_with_open_invoice(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock, pm=None)
    price = make_seat_price(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": 2}],
            "collection_method": "send_invoice",
            "days_until_due": 14,
            "metadata": {"contract": "C-42"},
        }
    )
    assert sub.status == "active"
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.status, invoice.amount_remaining, invoice.due_date) == (
        "open",
        2000,
        T0 + 14 * DAY,
    )
    paid = client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_remaining) == ("paid", 0)
    found = client.v1.subscriptions.search(params={"query": "metadata['contract']:'C-42'"})
    assert [s.id for s in found.data] == [sub.id]
    by_status = client.v1.invoices.search(
        params={"query": f"customer:'{customer.id}' AND status:'paid'"}
    )
    assert [i.id for i in by_status.data] == [invoice.id]


def test_an_unpaid_invoice_falls_overdue_once_at_its_due_date(
    client: stripe.StripeClient,
) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock, pm=None)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": make_seat_price(client).id, "quantity": 1}],
            "collection_method": "send_invoice",
            "days_until_due": 14,
        }
    )
    invoice = str(sub.latest_invoice)

    def overdue() -> list[Any]:
        listed = client.v1.events.list(params={"type": "invoice.overdue", "limit": 100}).data
        return [e for e in listed if e.data.object.id == invoice]

    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 13 * DAY})
    assert overdue() == []
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 20 * DAY})
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 25 * DAY})
    (event,) = overdue()
    assert event.created == T0 + 14 * DAY
    assert (event.data.object.status, event.data.object.amount_remaining) == ("open", 1000)


def test_error_if_incomplete_update_is_undone_on_decline(client: stripe.StripeClient) -> None:
    _, customer, sub = _setup(client)
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer.id}
    )
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    item = sub["items"].data[0]
    with pytest.raises(stripe.CardError):
        client.v1.subscription_items.update(
            item.id,
            params={
                "quantity": 9,
                "proration_behavior": "always_invoice",
                "payment_behavior": "error_if_incomplete",
                "proration_date": T0 + 10 * DAY,
            },
        )
    assert client.v1.subscription_items.retrieve(item.id).quantity == 5
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1
    assert _pending(client, customer.id) == []
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_create_preview_shows_prorations_without_keeping_them(client: stripe.StripeClient) -> None:
    _, customer, sub = _setup(client)
    item = sub["items"].data[0]
    change = {"items": [{"id": item.id, "quantity": 7}], "proration_date": T0 + 10 * DAY}
    preview = client.v1.invoices.create_preview(
        params={"subscription": sub.id, "subscription_details": change}
    )
    assert preview.id.startswith("upcoming_")
    assert sorted(line.amount for line in preview.lines.data) == [-3387, 4742, 7000]
    assert (preview.total, preview.amount_due, preview.created) == (8355, 8355, FEB_1)
    immediate = client.v1.invoices.create_preview(
        params={
            "subscription": sub.id,
            "subscription_details": {**change, "proration_behavior": "always_invoice"},
        }
    )
    assert (immediate.total, immediate.billing_reason) == (1355, "subscription_update")
    assert client.v1.subscription_items.retrieve(item.id).quantity == 5
    assert _pending(client, customer.id) == []
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1
    plain = client.v1.invoices.create_preview(
        params={"customer": customer.id, "subscription": sub.id}
    )
    assert [line.amount for line in plain.lines.data] == [5000]


def test_failed_renewal_is_retried_then_recovers_or_cancels(client: stripe.StripeClient) -> None:
    clock, customer, sub = _setup(client)
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer.id}
    )
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    advance = client.v1.test_helpers.test_clocks.advance
    advance(clock.id, params={"frozen_time": FEB_1})
    renewal = client.v1.invoices.list(params={"customer": customer.id}).data[0]
    assert (renewal.attempt_count, renewal.next_payment_attempt) == (1, FEB_1 + 3 * DAY)
    advance(clock.id, params={"frozen_time": FEB_1 + 4 * DAY})
    renewal = client.v1.invoices.retrieve(renewal.id)
    assert (renewal.attempt_count, renewal.next_payment_attempt, renewal.status) == (
        2,
        FEB_1 + 6 * DAY,
        "open",
    )
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    advance(clock.id, params={"frozen_time": FEB_1 + 7 * DAY})
    renewal = client.v1.invoices.retrieve(renewal.id)
    assert (renewal.attempt_count, renewal.status, renewal.status_transitions.paid_at) == (
        3,
        "paid",
        FEB_1 + 6 * DAY,
    )
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"

    clock2, customer2, sub2 = _setup(client, pm="pm_card_visa")
    bad = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer2.id}
    )
    client.v1.customers.update(
        customer2.id, params={"invoice_settings": {"default_payment_method": bad.id}}
    )
    advance(clock2.id, params={"frozen_time": FEB_1 + 20 * DAY})
    ended = client.v1.subscriptions.retrieve(sub2.id)
    assert (ended.status, ended.cancellation_details.reason, ended.ended_at) == (
        "canceled",
        "payment_failed",
        FEB_1 + 9 * DAY,
    )
    unpaid = client.v1.invoices.list(params={"customer": customer2.id}).data[0]
    assert (unpaid.attempt_count, unpaid.status, unpaid.next_payment_attempt) == (4, "open", None)


def test_trial_then_first_paid_period(client: stripe.StripeClient) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = make_seat_price(client)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": 4}],
            "trial_period_days": 14,
        }
    )
    trial_end = T0 + 14 * DAY
    assert (sub.status, sub.trial_start, sub.trial_end, sub.billing_cycle_anchor) == (
        "trialing",
        T0,
        trial_end,
        trial_end,
    )
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.total, first.status, first.lines.data[0].description) == (
        0,
        "paid",
        "Trial period for Seat",
    )
    client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": sub["items"].data[0].id, "quantity": 6}]}
    )
    assert _pending(client, customer.id) == []
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": trial_end + 3600})
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after.status == "active"
    assert (
        after["items"].data[0].current_period_start,
        after["items"].data[0].current_period_end,
    ) == (
        trial_end,
        trial_end + 31 * DAY,
    )
    paid = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert (paid.total, paid.amount_paid, paid.billing_reason) == (6000, 6000, "subscription_cycle")
    assert (paid.lines.data[0].period.start, paid.lines.data[0].period.end) == (
        trial_end,
        trial_end + 31 * DAY,
    )


# --- previous_attributes as Stripe sends them -------------------------------------------------
# A real renewal (API 2025-08-27.basil, captured from Stripe) carries
# ``previous_attributes = {"items": {"data": [<every item, with its old current_period_*>]},
# "latest_invoice": <the previous invoice>}``: nested objects hold only their changed keys,
# changed arrays come whole.


def _sub_updates(client: stripe.StripeClient, sub_id: str) -> list[Any]:
    """This subscription's ``customer.subscription.updated`` events, oldest first, as dicts."""
    events = client.v1.events.list(params={"type": "customer.subscription.updated", "limit": 100})
    return [e.data.to_dict() for e in reversed(events.data) if e.data.object.id == sub_id]


def test_renewal_event_carries_the_items_old_periods_and_previous_invoice(
    client: stripe.StripeClient,
) -> None:
    clock, _, sub = _setup(client)
    first_invoice = sub.latest_invoice.id
    before = len(_sub_updates(client, sub.id))
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 3600})
    (renewal,) = _sub_updates(client, sub.id)[before:]
    previous = renewal["previous_attributes"]
    assert set(previous) == {"items", "latest_invoice"}
    assert previous["latest_invoice"] == first_invoice
    assert set(previous["items"]) == {"data"}  # the list envelope itself did not change
    (old_item,) = previous["items"]["data"]
    (new_item,) = renewal["object"]["items"]["data"]
    assert old_item["id"] == new_item["id"] and old_item["object"] == "subscription_item"
    assert (old_item["current_period_start"], old_item["current_period_end"]) == (T0, FEB_1)
    assert (new_item["current_period_start"], new_item["current_period_end"]) == (FEB_1, MAR_1)
    assert old_item["quantity"] == new_item["quantity"] == 5
    assert renewal["object"]["latest_invoice"] != first_invoice
    # invoice.created comes before the subscription's update, as on Stripe
    types = [
        e.type
        for e in reversed(client.v1.events.list(params={"limit": 100, "created": {"gt": T0}}).data)
    ]
    last_created = len(types) - 1 - types[::-1].index("invoice.created")
    assert types.index("customer.subscription.updated", last_created) > last_created


def test_quantity_change_event_carries_the_old_items_only(client: stripe.StripeClient) -> None:
    _, _, sub = _setup(client)
    item = sub["items"].data[0]
    before = len(_sub_updates(client, sub.id))
    client.v1.subscription_items.update(
        item.id, params={"quantity": 8, "proration_behavior": "none"}
    )
    client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "quantity": 9}], "proration_behavior": "none"}
    )
    client.v1.subscriptions.update(sub.id, params={"metadata": {"contract_number": "C-1"}})
    by_item, by_sub, by_meta = _sub_updates(client, sub.id)[before:]
    for event, old, new in ((by_item, 5, 8), (by_sub, 8, 9)):
        previous = event["previous_attributes"]
        assert set(previous["items"]) == {"data"}
        assert [i["quantity"] for i in previous["items"]["data"]] == [old]
        assert event["object"]["items"]["data"][0]["quantity"] == new
        # the period did not move: the old items carry the same period as the new ones
        assert previous["items"]["data"][0]["current_period_start"] == T0
    assert by_meta["previous_attributes"] == {"metadata": {"contract_number": None}}


def test_removing_an_item_announces_the_items_before(client: stripe.StripeClient) -> None:
    _, _, sub = _setup(client)
    addon = make_seat_price(client, 3100)
    added = client.v1.subscription_items.create(
        params={"subscription": sub.id, "price": addon.id, "quantity": 1}
    )
    client.v1.subscription_items.delete(added.id, params={"proration_behavior": "none"})
    removal = _sub_updates(client, sub.id)[-1]
    old = removal["previous_attributes"]["items"]["data"]
    assert sorted(i["id"] for i in old) == sorted([sub["items"].data[0].id, added.id])
    assert [i["id"] for i in removal["object"]["items"]["data"]] == [sub["items"].data[0].id]


def test_trial_end_is_one_update_from_trialing_with_the_new_period(
    client: stripe.StripeClient,
) -> None:
    clock = make_clock(client)
    customer = make_customer(client, clock)
    price = make_seat_price(client)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 14}
    )
    before = len(_sub_updates(client, sub.id))
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 15 * DAY})
    (ended,) = _sub_updates(client, sub.id)[before:]
    previous = ended["previous_attributes"]
    assert previous["status"] == "trialing" and ended["object"]["status"] == "active"
    assert previous["items"]["data"][0]["current_period_end"] == T0 + 14 * DAY


def test_activation_is_announced_once(client: stripe.StripeClient) -> None:
    _, _, sub = _setup(client)
    (activated,) = _sub_updates(client, sub.id)
    assert activated["previous_attributes"]["status"] == "incomplete"
