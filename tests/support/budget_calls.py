"""A registry for ``q2c worker --handlers support.budget_calls:registry``: each billing event
creates one customer in the Stripe emulator at ``Q2C_TEST_STRIPE_URL`` through the official SDK
(our ``StripeApi``); each ERP event makes one call to the endpoint at ``Q2C_TEST_ERP_URL``, or,
with ``Q2C_TEST_ERP_HOLD=1``, holds its call (and its concurrency slot) for a minute."""

from __future__ import annotations

import asyncio
import os

import aiohttp

from quote2cash.connectors.stripe.client import StripeApi
from quote2cash.connectors.stripe.config import StripeConfig
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.registry import Registry

BILLING_CALL = "test.billing_call.requested"
ERP_CALL = "test.erp_slot.requested"
registry = Registry()
_api: StripeApi | None = None


def api() -> StripeApi:
    global _api
    if _api is None:
        _api = StripeApi(
            StripeConfig.model_validate(
                {"api_key": "sk_test_budgets", "base_url": os.environ["Q2C_TEST_STRIPE_URL"]}
            )
        )
    return _api


@registry.on(BILLING_CALL)
async def create_customer(ctx: HandlerContext, event: Event) -> None:
    stripe = api()

    async def create(key: str) -> str:
        customer = await stripe.call(
            f"create customer {event.id}",
            lambda: stripe.sdk.v1.customers.create_async(
                params={"name": f"budget {event.id}"}, options={"idempotency_key": key}
            ),
        )
        return str(customer.id)

    await ctx.step("billing.create_customer", create)


@registry.on(ERP_CALL)
async def call_erp(ctx: HandlerContext, event: Event) -> None:
    async def call(_key: str) -> int:
        if os.environ.get("Q2C_TEST_ERP_HOLD") == "1":
            await asyncio.sleep(60)
        url = f"{os.environ['Q2C_TEST_ERP_URL']}/{event.id}"
        async with aiohttp.ClientSession() as http, http.post(url) as answered:
            return answered.status

    await ctx.step("erp.post_invoice", call)
