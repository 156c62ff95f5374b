"""Documented choices: declines are outcomes, send_invoice, key reuse with other params."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quote2cash.canonical import (
    Customer,
    Money,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from quote2cash.connectors.stripe import StripeBilling
from quote2cash.engine.errors import ConflictError

from .conftest import Sandbox

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _subscription(customer_id: str, price: str, quantity: int = 2) -> Subscription:
    return Subscription(
        contract_number="C-9",
        customer=Ref.external("billing", customer_id),
        currency="EUR",
        status=SubscriptionStatus.INCOMPLETE,
        items=(SubscriptionItem(price_plan=Ref.external("billing", price), quantity=quantity),),
        current_period_start=NOW,
        current_period_end=NOW + timedelta(days=31),
    )


async def test_a_declined_first_payment_is_an_outcome_then_pay_invoice_collects(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    customer_id = sandbox.customer(card="pm_card_chargeCustomerFail")
    price = sandbox.seat_price(1500)
    created = await billing.create_subscription(
        _subscription(customer_id, price), idempotency_key="evt-1:subscribe"
    )
    assert created.status == "incomplete"
    sub_id = created.id_in("billing")
    invoice_id = sandbox.sdk.v1.subscriptions.retrieve(sub_id or "").latest_invoice
    assert isinstance(invoice_id, str)
    failed = await billing.pay_invoice(invoice_id, idempotency_key="evt-2:pay")
    assert failed is not None and failed.status == "failed"
    assert failed.failure_code and "declin" in (failed.failure_code + (failed.failure_reason or ""))
    assert failed.amount == Money("30.00", "EUR")
    card = sandbox.sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    sandbox.sdk.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    paid = await billing.pay_invoice(invoice_id, idempotency_key="evt-3:pay")
    assert paid is not None and paid.status == "succeeded" and paid.amount == Money("30.00", "EUR")
    again = await billing.pay_invoice(invoice_id, idempotency_key="evt-4:pay")
    assert again == paid
    assert (await billing.get_subscription(sub_id or "")).status == "active"
    assert (await billing.get_invoice(invoice_id)).status == "paid"


async def test_send_invoice_collection_leaves_the_invoice_open(sandbox: Sandbox) -> None:
    customer_id = sandbox.customer(card=None)
    price = sandbox.seat_price(1000)
    async with StripeBilling.for_sandbox(
        sandbox.base_url, collection_method="send_invoice", days_until_due=14
    ) as billing:
        created = await billing.create_subscription(
            _subscription(customer_id, price, 1), idempotency_key="evt-1:subscribe"
        )
        assert created.status == "active"
        stored = sandbox.sdk.v1.subscriptions.retrieve(created.id_in("billing") or "")
        assert (stored.collection_method, stored.days_until_due) == ("send_invoice", 14)
        invoice = await billing.get_invoice(str(stored.latest_invoice))
        assert invoice.status == "open" and invoice.total == Money("10.00", "EUR")
        assert invoice.due_date is not None


async def test_one_key_with_other_parameters_is_a_conflict(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    customer_id = sandbox.customer()
    price = sandbox.seat_price(1000)
    await billing.create_subscription(_subscription(customer_id, price, 1), idempotency_key="k")
    with pytest.raises(ConflictError) as info:
        await billing.create_subscription(_subscription(customer_id, price, 7), idempotency_key="k")
    assert info.value.system == "billing"
    assert len(sandbox.sdk.v1.subscriptions.list(params={"status": "all"}).data) == 1


async def test_customer_lookup_by_email_for_accounts_without_search(sandbox: Sandbox) -> None:
    async with StripeBilling.for_sandbox(sandbox.base_url, customer_lookup="email") as billing:
        customer = Customer(global_id="g-1", name="Mail Only", email="ap@mail.example")
        first = await billing.upsert_customer(customer, idempotency_key="e1")
        other = Customer(global_id="g-2", name="Same Mail", email="ap@mail.example")
        second = await billing.upsert_customer(other, idempotency_key="e2")
        again = await billing.upsert_customer(
            customer.model_copy(update={"name": "Mail Only AG"}), idempotency_key="e3"
        )
    assert first != second and again == first
    assert sandbox.sdk.v1.customers.retrieve(first).name == "Mail Only AG"
    assert len(sandbox.sdk.v1.customers.list().data) == 2


def test_config_never_shows_secrets() -> None:
    from quote2cash.connectors.stripe import StripeConfig

    config = StripeConfig(
        api_key="sk_live_supersecret123456", webhook_secret="whsec_hidden_value_987"
    )
    shown = f"{config!r} {config} {config.model_dump()} {config.model_dump_json()}"
    assert "supersecret" not in shown and "hidden_value" not in shown
    assert "supersecret" not in repr(StripeBilling(config))
    with pytest.raises(ValueError, match=r"sk_\.\.\. or rk_") as info:
        StripeConfig(api_key="pk_test_publishable_abc")
    assert "publishable_abc" not in str(info.value)
