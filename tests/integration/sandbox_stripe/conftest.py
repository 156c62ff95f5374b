"""Shared fixtures: one emulator per test module on a background thread, reset before each test."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stripe

from quote2cash.sandbox.stripe import EmulatorConfig, StripeEmulator

API_KEY = "sk_test_emulator_suite"
T0 = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400


@dataclass
class Sandbox:
    emulator: StripeEmulator
    base_url: str

    def client(self, api_key: str = API_KEY, **kwargs: Any) -> stripe.StripeClient:
        kwargs.setdefault("max_network_retries", 0)
        return stripe.StripeClient(api_key=api_key, base_addresses={"api": self.base_url}, **kwargs)

    def raw(
        self,
        method: str,
        path: str,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        api_key: str | None = API_KEY,
    ) -> tuple[int, dict[str, str], Any]:
        """One plain HTTP call, for checks below the SDK (headers, exact status and body)."""
        all_headers = dict(headers or {})
        if api_key is not None:
            all_headers.setdefault("Authorization", f"Bearer {api_key}")
        if body is not None:
            all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        request = urllib.request.Request(
            self.base_url + path,
            data=body.encode() if body is not None else None,
            method=method,
            headers=all_headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())

    def drain_webhooks(self) -> None:
        self.emulator.run_in_loop(self.emulator.webhooks.drain())


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
def client(sandbox: Sandbox) -> stripe.StripeClient:
    return sandbox.client()


def make_clock(client: stripe.StripeClient, at: int = T0) -> Any:
    return client.v1.test_helpers.test_clocks.create(params={"frozen_time": at, "name": "suite"})


def make_customer(
    client: stripe.StripeClient,
    clock: Any | None = None,
    pm: str | None = "pm_card_visa",
    **extra: Any,
) -> Any:
    params: dict[str, Any] = {"name": "Acme GmbH", "email": "billing@acme.example", **extra}
    if clock is not None:
        params["test_clock"] = clock.id
    if pm is not None:
        params["payment_method"] = pm
        params["invoice_settings"] = {"default_payment_method": pm}
    return client.v1.customers.create(params=params)


def make_seat_price(
    client: stripe.StripeClient, unit_amount: int = 1000, interval: str = "month"
) -> Any:
    product = client.v1.products.create(params={"name": "Seat"})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": unit_amount,
            "recurring": {"interval": interval, "usage_type": "licensed"},
            "lookup_key": f"seat_{unit_amount}_{interval}",
            "transfer_lookup_key": True,
        }
    )
