"""Effectively once: the same step run again (same idempotency key) changes nothing more."""

from __future__ import annotations

import asyncio

from quote2cash.canonical import Address, Customer, Ref
from quote2cash.connectors.roles import Billing

from .harness import BillingHarness, subscription_for


def acme(name: str = "Acme GmbH") -> Customer:
    return Customer(
        global_id="cust-acme-1",
        name=name,
        email="ap@acme.example",
        address=Address(line1="Hauptstr. 1", city="Berlin", postal_code="10115", country="DE"),
        currency="EUR",
        external_ids={"crm": "001ACME", "erp": "ERP-42"},
    )


def test_the_role_is_implemented(billing: Billing) -> None:
    assert isinstance(billing, Billing)
    assert billing.system == "billing"


async def test_upsert_customer_twice_with_one_key_makes_one_customer(
    billing: Billing, harness: BillingHarness
) -> None:
    first = await billing.upsert_customer(acme(), idempotency_key="evt-1:upsert")
    again = await billing.upsert_customer(acme(), idempotency_key="evt-1:upsert")
    assert first == again
    assert harness.count("customers") == 1
    stored = harness.customer(first)
    assert stored.global_id == "cust-acme-1" and stored.currency == "EUR"
    assert stored.external_ids == {"billing": first, "crm": "001ACME", "erp": "ERP-42"}
    assert (stored.name, stored.email) == ("Acme GmbH", "ap@acme.example")
    assert stored.address is not None
    assert (stored.address.city, stored.address.country) == ("Berlin", "DE")


async def test_upsert_customer_finds_by_global_id_and_updates(
    billing: Billing, harness: BillingHarness
) -> None:
    created = await billing.upsert_customer(acme(), idempotency_key="evt-1:upsert")
    renamed = await billing.upsert_customer(acme("Acme SE"), idempotency_key="evt-2:upsert")
    assert renamed == created
    assert harness.count("customers") == 1
    assert harness.customer(created).name == "Acme SE"


async def test_two_deals_of_one_customer_onboarded_at_once_make_one_customer(
    billing: Billing, harness: BillingHarness
) -> None:
    """Two steps with their own keys race for the same new customer: one customer, not two."""
    first, second = await asyncio.gather(
        billing.upsert_customer(acme(), idempotency_key="deal-1:upsert"),
        billing.upsert_customer(acme(), idempotency_key="deal-2:upsert"),
    )
    assert first == second
    assert harness.count("customers") == 1
    renamed = await billing.upsert_customer(acme("Acme SE"), idempotency_key="deal-3:upsert")
    assert renamed == first and harness.count("customers") == 1


async def test_create_subscription_twice_with_one_key_makes_one_subscription(
    billing: Billing, harness: BillingHarness
) -> None:
    price = harness.seat_price("33.33", key="seat_eur")
    customer = harness.customer_with_card()
    requested = subscription_for(customer, [("seat_eur", 3)], global_id="sub-hub-1")
    first = await billing.create_subscription(requested, idempotency_key="evt-9:subscribe")
    again = await billing.create_subscription(requested, idempotency_key="evt-9:subscribe")
    assert harness.count("subscriptions") == 1
    assert first == again
    sub_id = first.id_in("billing")
    assert sub_id is not None
    assert first.global_id == "sub-hub-1" and first.contract_number == "C-0001"
    assert first.status == "active"
    (item,) = first.items
    assert item.quantity == 3
    assert item.price_plan == Ref.external("billing", "seat_eur")
    stored = harness.subscription(sub_id)
    assert [(i.id, i.price, i.quantity) for i in stored.items] == [
        (item.id_in("billing"), price, 3)
    ]
    assert (stored.contract_number, stored.global_id) == ("C-0001", "sub-hub-1")
    assert len(harness.invoices_of(sub_id)) == 1


async def test_subscription_for_a_customer_known_only_by_global_id(
    billing: Billing, harness: BillingHarness
) -> None:
    customer_id = await billing.upsert_customer(acme(), idempotency_key="evt-1:upsert")
    harness.give_card(customer_id)
    price = harness.seat_price("10.00")
    requested = subscription_for(Ref.to("cust-acme-1"), [(price, 1)])
    created = await billing.create_subscription(requested, idempotency_key="evt-2:subscribe")
    assert created.status == "active"
    sub_id = created.id_in("billing")
    assert sub_id is not None
    assert harness.subscription(sub_id).customer == customer_id


async def test_change_quantity_twice_with_one_key_prorates_once(
    billing: Billing, harness: BillingHarness
) -> None:
    from datetime import timedelta

    from quote2cash.canonical import Amendment, ProrationBehavior

    from .harness import T0

    clock = harness.start_clock()
    customer = harness.customer_with_card(clock=clock)
    price = harness.seat_price("20.00")
    created = await billing.create_subscription(
        subscription_for(customer, [(price, 2)]), idempotency_key="evt-1:subscribe"
    )
    harness.advance_clock(clock, T0 + timedelta(days=15))
    amendment = Amendment(
        subscription=Ref(external_ids=created.external_ids),
        subscription_item=Ref(external_ids=created.items[0].external_ids),
        amendment_number=1,
        effective_at=T0 + timedelta(days=15),
        previous_quantity=2,
        new_quantity=4,
        proration_behavior=ProrationBehavior.ALWAYS_INVOICE,
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    first = await billing.change_quantity(amendment, idempotency_key="evt-2:amend")
    again = await billing.change_quantity(amendment, idempotency_key="evt-2:amend")
    assert first.items[0].quantity == again.items[0].quantity == 4
    assert len(harness.invoices_of(sub_id)) == 2
