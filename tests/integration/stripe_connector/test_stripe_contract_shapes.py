"""What the Billing contract leaves to Stripe: the wire shapes behind its neutral scenarios.

The contract suite (tests/contract/billing) checks behaviour any billing system must show; these
pin how the Stripe connector says it on the wire -- metadata keys, Idempotency-Keys, Stripe ids
and event types -- on the same emulator harness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from contract.billing.harness import HarnessFactory, subscription_for
from contract.billing.stripe_harness import StripeEmulatorHarness, running_stripe
from quote2cash.canonical import Address, Customer, Money, PaymentStatus
from quote2cash.engine.errors import AuthError


@pytest.fixture(scope="module")
def factory() -> Iterator[HarnessFactory]:
    with running_stripe() as made:
        yield made


@pytest.fixture
async def harness(factory: HarnessFactory) -> AsyncIterator[StripeEmulatorHarness]:
    built = factory()
    assert isinstance(built, StripeEmulatorHarness)
    built.reset()
    yield built
    await built.close()


def acme(name: str = "Acme GmbH") -> Customer:
    return Customer(
        global_id="cust-acme-1",
        name=name,
        email="ap@acme.example",
        address=Address(line1="Hauptstr. 1", city="Berlin", postal_code="10115", country="DE"),
        currency="EUR",
        external_ids={"crm": "001ACME", "erp": "ERP-42"},
    )


async def test_a_customer_carries_the_hubs_references_in_metadata_and_keys_its_create(
    harness: StripeEmulatorHarness,
) -> None:
    """The create is keyed by the global id (two deals racing make one customer)."""
    created = await harness.billing.upsert_customer(acme(), idempotency_key="evt-1:upsert")
    assert harness.idempotency_keys_of("customer.created") == ["q2c-customer:cust-acme-1:create"]
    assert harness.customer_record(created)["metadata"] == {
        "hub_global_id": "cust-acme-1",
        "crm_account_id": "001ACME",
        "erp_customer_id": "ERP-42",
        "preferred_currency": "EUR",
    }
    await harness.billing.upsert_customer(acme("Acme SE"), idempotency_key="evt-2:upsert")
    assert harness.idempotency_keys_of("customer.updated")[-1] == "evt-2:upsert:update"


async def test_a_subscription_is_keyed_by_the_step_and_carries_its_contract_in_metadata(
    harness: StripeEmulatorHarness,
) -> None:
    harness.seat_price("33.33", key="seat_eur")
    customer = harness.customer_with_card()
    requested = subscription_for(customer, [("seat_eur", 3)], global_id="sub-hub-1")
    created = await harness.billing.create_subscription(
        requested, idempotency_key="evt-9:subscribe"
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None and sub_id.startswith("sub_")
    assert harness.idempotency_keys_of("customer.subscription.created") == ["evt-9:subscribe"]
    metadata = harness.subscription_record(sub_id)["metadata"]
    assert metadata == {"contract_number": "C-0001", "hub_global_id": "sub-hub-1"}


async def test_a_rejected_key_stays_out_of_the_connectors_config_repr(
    harness: StripeEmulatorHarness,
) -> None:
    wrong = harness.billing_with_bad_secret()
    with pytest.raises(AuthError):
        await wrong.upsert_customer(Customer(name="X"), idempotency_key="k1")
    assert harness.bad_secret not in repr(wrong.config)


async def test_a_payment_is_found_by_its_intent_or_its_charge(
    harness: StripeEmulatorHarness,
) -> None:
    customer = harness.customer_with_card(clock=harness.start_clock())
    created = await harness.billing.create_subscription(
        subscription_for(customer, [(harness.seat_price("33.33"), 3)]),
        idempotency_key="evt-1:subscribe",
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    (invoice,) = harness.invoices_of(sub_id)
    intent = harness.payment_of(invoice)
    charge = str(harness.sdk.v1.payment_intents.retrieve(intent).latest_charge)
    assert charge.startswith("ch_")
    payment = await harness.billing.get_payment(charge)
    assert payment.id_in("billing") == intent
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.amount == Money("99.99", "EUR")


async def test_a_price_keeps_its_lookup_key_as_an_external_id(
    harness: StripeEmulatorHarness,
) -> None:
    made = harness.prices(2)
    by_id = {p.id_in("billing"): p for p in await harness.billing.list_prices()}
    assert [by_id[price].external_ids["lookup_key"] for price in made] == ["bulk_0", "bulk_1"]


async def test_stripe_event_types_map_to_the_hubs_and_keep_their_stripe_type(
    harness: StripeEmulatorHarness,
) -> None:
    made = harness.customers_made_outside_the_hub(1)
    start = harness.event_ids_oldest_first()[-1]
    (customer_event,) = (await harness.billing.list_events(None, limit=100)).items
    assert customer_event.data["object_id"] == customer_event.subject == made[0]
    customer = harness.customer_with_card()
    created = await harness.billing.create_subscription(
        subscription_for(customer, [(harness.seat_price("10.00"), 1)]),
        idempotency_key="evt-1:subscribe",
    )
    page = await harness.billing.list_events(start, limit=100)
    by_type = {e.data["stripe_type"]: e for e in page.items}
    assert by_type["customer.subscription.created"].subject == created.id_in("billing")
    assert by_type["invoice.finalized"].type == "billing.invoice.finalized"
    assert by_type["invoice.payment_succeeded"].type == "billing.payment.succeeded"
    assert by_type["invoice.paid"].type == "billing.invoice.paid"
