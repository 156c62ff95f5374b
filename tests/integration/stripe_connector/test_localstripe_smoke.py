"""The connector's smoke subset against localstripe (third-party, GPL; a separate process).

Covered: ``check``; ``upsert_customer`` with metadata (found again by email, as localstripe has
no search: ``customer_lookup="email"``); ``create_subscription`` with a legacy plan id as the
item's price (sent as ``items[][plan]``, which localstripe takes); ``get_subscription``;
``get_invoice`` (its 2017-08-15 shapes: ``invoice.subscription``, line ``plan``/``proration``,
``tax_amounts``); ``pay_invoice`` failing on a card that declines charges (localstripe answers
200 and leaves the invoice open, where Stripe answers 402) and succeeding with a good card;
``cancel`` at period end, ``renew``, ``cancel`` now; signed webhooks verified by
``verify_webhook``.

Skipped, because localstripe cannot do them (see reference/fakes.md): ``list_prices`` (no Prices
API), ``change_quantity`` (no ``proration_behavior``; whole-period credits), ``report_usage`` (no
billing meters), idempotency (it ignores ``Idempotency-Key``), ``list_events`` paging (it lists
oldest first and has no ``ending_before``), customer search. The emulator-backed contract suite
(``tests/contract/billing``) covers those.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import stripe
from aiohttp import web

from quote2cash.canonical import (
    Customer,
    Money,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from quote2cash.connectors.stripe import StripeBilling, verify_webhook

SECRET = "whsec_localstripe_smoke_secret"


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    if importlib.util.find_spec("localstripe") is None:
        if os.environ.get("Q2C_REQUIRE_SERVICES") == "1":
            pytest.fail("localstripe is not installed")
        pytest.skip("localstripe is not installed")
    from quote2cash.sandbox.localstripe import start_localstripe

    running = start_localstripe()
    try:
        yield running.base_url
    finally:
        running.stop()


@dataclass
class Receiver:
    url: str = ""
    deliveries: list[tuple[bytes, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((await request.read(), request.headers.get("Stripe-Signature", "")))
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/hooks"
    yield state
    await runner.cleanup()


@pytest.fixture
async def billing(localstripe_url: str) -> AsyncIterator[StripeBilling]:
    async with StripeBilling.for_sandbox(
        localstripe_url, customer_lookup="email", webhook_secret=SECRET
    ) as connector:
        yield connector


def _sdk(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key="sk_test_smoke", base_addresses={"api": url}, max_network_retries=0
    )


def _plan(sdk: stripe.StripeClient, amount: int = 1500) -> str:
    product = sdk.v1.products.create(params={"name": "Seat"})
    plan = sdk.v1.plans.create(
        params={"amount": amount, "currency": "eur", "interval": "month", "product": product.id}
    )
    return str(plan.id)


def _subscription(customer_id: str, plan: str, quantity: int) -> Subscription:
    now = datetime.now(UTC)
    return Subscription(
        contract_number="C-SMOKE",
        global_id="sub-smoke",
        customer=Ref.external("billing", customer_id),
        currency="EUR",
        status=SubscriptionStatus.INCOMPLETE,
        items=(SubscriptionItem(price_plan=Ref.external("billing", plan), quantity=quantity),),
        current_period_start=now,
        current_period_end=now + timedelta(days=30),
    )


def _add_card(sdk: stripe.StripeClient, customer_id: str, test_card: str = "pm_card_visa") -> None:
    card = sdk.v1.payment_methods.attach(test_card, params={"customer": customer_id})
    sdk.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": card.id}}
    )


async def test_customer_subscription_invoice_and_cancel(
    localstripe_url: str, billing: StripeBilling
) -> None:
    sdk = _sdk(localstripe_url)
    check = await billing.check()
    assert (check.reachable, check.authenticated) == (True, True)
    customer = Customer(
        global_id="cust-smoke",
        name="Smoke AG",
        email="smoke@acme.example",
        external_ids={"crm": "001SMOKE", "erp": "ERP-7"},
    )
    customer_id = await billing.upsert_customer(customer, idempotency_key="s1")
    again = await billing.upsert_customer(
        customer.model_copy(update={"name": "Smoke SE"}), idempotency_key="s2"
    )
    assert again == customer_id
    stored = sdk.v1.customers.retrieve(customer_id)
    assert stored.name == "Smoke SE"
    assert stored.metadata.to_dict() == {
        "hub_global_id": "cust-smoke",
        "crm_account_id": "001SMOKE",
        "erp_customer_id": "ERP-7",
    }
    _add_card(sdk, customer_id)
    plan = _plan(sdk)
    created = await billing.create_subscription(
        _subscription(customer_id, plan, 3), idempotency_key="s3"
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None and created.status == "active"
    assert created.items[0].quantity == 3 and created.items[0].id_in("billing")
    fetched = await billing.get_subscription(sub_id)
    assert fetched.contract_number == "C-SMOKE" and fetched.global_id == "sub-smoke"
    assert fetched.items[0].price_plan.id_in("billing") == plan
    (first,) = sdk.v1.invoices.list(params={"customer": customer_id}).data
    invoice = await billing.get_invoice(first.id)
    assert invoice.total == Money("45.00", "EUR") == Money.from_stripe_amount(first.total, "eur")
    assert invoice.subtotal + invoice.tax == invoice.total
    assert invoice.status == "paid" and invoice.subscription is not None
    assert invoice.subscription.id_in("billing") == sub_id
    assert invoice.lines[0].price_plan is not None
    assert invoice.lines[0].price_plan.id_in("billing") == plan
    ending = await billing.cancel(sub_id, at_period_end=True, idempotency_key="s4")
    assert ending.status == "active"
    assert sdk.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is True
    renewed = await billing.renew(sub_id, idempotency_key="s5")
    assert renewed.status == "active"
    assert sdk.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is False
    canceled = await billing.cancel(sub_id, at_period_end=False, idempotency_key="s6")
    assert canceled.status == "canceled"
    assert (await billing.cancel(sub_id, at_period_end=False, idempotency_key="s7")).status == (
        "canceled"
    )


async def test_a_failed_charge_is_an_outcome_and_paying_later_works(
    localstripe_url: str, billing: StripeBilling
) -> None:
    sdk = _sdk(localstripe_url)
    customer_id = await billing.upsert_customer(
        Customer(global_id="cust-fail", name="Failing Card", email="fail@acme.example"),
        idempotency_key="p1",
    )
    _add_card(sdk, customer_id, "pm_card_chargeCustomerFail")
    plan = _plan(sdk, 2000)
    created = await billing.create_subscription(
        _subscription(customer_id, plan, 1), idempotency_key="p2"
    )
    assert created.status == "incomplete"
    (open_invoice,) = sdk.v1.invoices.list(params={"customer": customer_id}).data
    assert open_invoice.status == "open"
    failed = await billing.pay_invoice(open_invoice.id, idempotency_key="p3")
    assert failed is not None and failed.status == "failed" and failed.failure_code
    assert failed.amount == Money("20.00", "EUR")
    _add_card(sdk, customer_id)
    payment = await billing.pay_invoice(open_invoice.id, idempotency_key="p4")
    assert payment is not None and payment.status == "succeeded"
    assert payment.amount == Money("20.00", "EUR")
    assert (await billing.get_invoice(open_invoice.id)).status == "paid"
    assert (await billing.get_subscription(created.id_in("billing") or "")).status == "active"


async def test_signed_webhooks_verify(
    localstripe_url: str, billing: StripeBilling, receiver: Receiver
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{localstripe_url}/_config/webhooks/smoke",
            data={"url": receiver.url, "secret": SECRET, "events[]": "customer.created"},
        ) as registered,
    ):
        assert registered.status == 200
    customer_id = await billing.upsert_customer(
        Customer(global_id="cust-hook", name="Hook", email="hook@acme.example"),
        idempotency_key="w1",
    )
    deadline = time.monotonic() + 10
    while not any(customer_id.encode() in body for body, _ in receiver.deliveries):
        assert time.monotonic() < deadline, "localstripe delivered no webhook"
        await asyncio.sleep(0.05)
    body, header = next((b, h) for b, h in receiver.deliveries if customer_id.encode() in b)
    event = billing.verify_webhook(body, header)
    assert (event.type, event.subject) == ("billing.customer.created", customer_id)
    assert event.data["object"]["metadata"]["hub_global_id"] == "cust-hook"
    assert event.id == json.loads(body)["id"]
    with pytest.raises(Exception, match="webhook rejected"):
        verify_webhook(body, header, "whsec_not_the_secret")
