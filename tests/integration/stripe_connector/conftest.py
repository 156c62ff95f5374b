"""One Stripe emulator per module on a background thread, reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import stripe

from quote2cash.connectors.stripe import StripeBilling
from quote2cash.sandbox.stripe import EmulatorConfig, StripeEmulator

API_KEY = "sk_test_quote2cash_sandbox"


class Sandbox:
    def __init__(self, emulator: StripeEmulator, base_url: str) -> None:
        self.emulator = emulator
        self.base_url = base_url
        self.sdk = stripe.StripeClient(
            api_key=API_KEY, base_addresses={"api": base_url}, max_network_retries=0
        )

    def customer(self, card: str | None = "pm_card_visa", **extra: Any) -> str:
        params: dict[str, Any] = {"name": "Acme GmbH", "email": "ap@acme.example", **extra}
        if card:
            params["payment_method"] = card
            params["invoice_settings"] = {"default_payment_method": card}
        return str(self.sdk.v1.customers.create(params=params).id)

    def seat_price(self, unit_amount: int = 1500, currency: str = "eur") -> str:
        product = self.sdk.v1.products.create(params={"name": "Seat"})
        return str(
            self.sdk.v1.prices.create(
                params={
                    "product": product.id,
                    "currency": currency,
                    "unit_amount": unit_amount,
                    "recurring": {"interval": "month"},
                }
            ).id
        )


@pytest.fixture(scope="module")
def running() -> Iterator[Sandbox]:
    emulator = StripeEmulator()
    base_url, stop = emulator.start_in_thread()
    try:
        yield Sandbox(emulator, base_url)
    finally:
        stop()


@pytest.fixture
def sandbox(running: Sandbox) -> Sandbox:
    running.emulator.reset()
    running.emulator.config = EmulatorConfig()
    return running


@pytest.fixture
async def billing(sandbox: Sandbox) -> AsyncIterator[StripeBilling]:
    async with StripeBilling.for_sandbox(sandbox.base_url) as connector:
        yield connector
