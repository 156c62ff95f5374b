"""Products, prices, lookup keys, legacy plans, invoice items, and the events log."""

from __future__ import annotations

import pytest
import stripe

from .conftest import make_customer, make_seat_price


def test_products_and_prices(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(
        params={"name": "Platform", "metadata": {"erp_item": "ITEM-1"}}
    )
    seat = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": 4900,
            "recurring": {"interval": "year"},
            "lookup_key": "platform_seat_yearly",
        }
    )
    assert (seat.type, seat.recurring.usage_type, seat.recurring.interval) == (
        "recurring",
        "licensed",
        "year",
    )
    one_time = client.v1.prices.create(
        params={"product": product.id, "currency": "eur", "unit_amount": 15000}
    )
    assert one_time.type == "one_time" and one_time.recurring is None
    found = client.v1.prices.list(params={"lookup_keys": ["platform_seat_yearly"]})
    assert [p.id for p in found.data] == [seat.id]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "eur",
                "unit_amount": 5900,
                "lookup_key": "platform_seat_yearly",
            }
        )
    assert info.value.param == "lookup_key"
    moved = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount": 5900,
            "recurring": {"interval": "year"},
            "lookup_key": "platform_seat_yearly",
            "transfer_lookup_key": True,
        }
    )
    assert client.v1.prices.retrieve(seat.id).lookup_key is None
    assert [
        p.id for p in client.v1.prices.list(params={"lookup_keys": ["platform_seat_yearly"]}).data
    ] == [moved.id]
    assert {p.id for p in client.v1.prices.list(params={"product": product.id}).data} == {
        seat.id,
        one_time.id,
        moved.id,
    }
    archived = client.v1.prices.update(seat.id, params={"active": False})
    assert archived.active is False
    customer = make_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as inactive:
        client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": seat.id}]}
        )
    assert inactive.value.param == "items[0][price]"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.delete(product.id)
    updated = client.v1.products.update(
        product.id, params={"default_price": moved.id, "name": "Platform 2"}
    )
    assert (updated.default_price, updated.name) == (moved.id, "Platform 2")
    found_products = client.v1.products.search(params={"query": "metadata['erp_item']:'ITEM-1'"})
    assert [p.id for p in found_products.data] == [product.id]
    with pytest.raises(stripe.InvalidRequestError) as metered:
        client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "eur",
                "unit_amount": 1,
                "recurring": {"interval": "month", "usage_type": "metered"},
            }
        )
    assert metered.value.param == "recurring[meter]"


def test_legacy_plans_are_usable_as_prices(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Legacy"})
    plan = client.v1.plans.create(
        params={
            "id": "gold-monthly",
            "amount": 2500,
            "currency": "usd",
            "interval": "month",
            "product": product.id,
        }
    )
    assert (plan.id, plan.object, plan.amount) == ("gold-monthly", "plan", 2500)
    customer = make_customer(client)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": "gold-monthly", "quantity": 2}]}
    )
    assert client.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 5000
    assert [p.id for p in client.v1.plans.list().data] == ["gold-monthly"]


def test_invoice_items_edit_and_delete(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    price = client.v1.prices.create(
        params={"product_data": {"name": "Onboarding"}, "currency": "usd", "unit_amount": 12500}
    )
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    item = client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": invoice.id, "price": price.id, "quantity": 2}
    )
    assert item.amount == 25000 and item.invoice == invoice.id
    extra = client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": invoice.id, "amount": 999, "currency": "usd"}
    )
    client.v1.invoice_items.update(extra.id, params={"amount": 1000, "description": "Travel"})
    assert client.v1.invoices.retrieve(invoice.id).total == 26000
    client.v1.invoice_items.delete(extra.id)
    assert client.v1.invoices.retrieve(invoice.id).total == 25000
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoice_items.update(item.id, params={"amount": 1})
    assert info.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.create(
            params={"customer": customer.id, "invoice": invoice.id, "amount": 5, "currency": "usd"}
        )


def test_events_log_for_a_new_subscription(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    price = make_seat_price(client)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}]}
    )
    events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    types = [e.type for e in reversed(events)]
    ordered = [
        "customer.created",
        "payment_method.attached",
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice.payment_succeeded",
        "invoice.paid",
        "customer.subscription.updated",
    ]
    positions = [types.index(t) for t in ordered]
    assert positions == sorted(positions)
    subs = client.v1.events.list(params={"type": "customer.subscription.*"}).data
    assert {e.type for e in subs} == {
        "customer.subscription.created",
        "customer.subscription.updated",
    }
    assert all(e.data.object.id == sub.id for e in subs)
    created = client.v1.events.list(params={"type": "customer.subscription.created"}).data[0]
    assert created.data.object.status == "incomplete"
    assert created.request.idempotency_key is not None
    expanded = client.v1.invoices.list(
        params={"customer": customer.id, "expand": ["data.subscription"]}
    )
    assert expanded.data[0].subscription.id == sub.id
    client.v1.customers.delete(customer.id)
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_every_update_event_says_what_it_was_before(client: stripe.StripeClient) -> None:
    """``previous_attributes`` as Stripe: changed keys only, nested objects diffed (a new
    metadata key was null), on products, prices, customers and invoices alike."""
    customer = make_customer(client)
    price = make_seat_price(client)
    client.v1.prices.update(price.id, params={"nickname": "Seats", "metadata": {"tier": "a"}})
    client.v1.products.update(price.product, params={"name": "Seat licence"})
    client.v1.customers.update(customer.id, params={"metadata": {"crm": "001"}})
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoices.update(invoice.id, params={"description": "March"})

    def previous(type_: str) -> dict[str, object]:
        (event,) = client.v1.events.list(params={"type": type_}).data[:1]
        return event.data.to_dict()["previous_attributes"]

    assert previous("price.updated") == {"nickname": None, "metadata": {"tier": None}}
    product = previous("product.updated")
    assert product["name"] == "Seat" and set(product) <= {"name", "updated"}
    assert previous("customer.updated") == {"metadata": {"crm": None}}
    assert previous("invoice.updated") == {"description": None}
