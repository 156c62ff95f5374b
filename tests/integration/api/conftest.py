"""The hub's API served on 127.0.0.1 (a free port) over a real store, with real senders:
the Stripe emulator delivering signed webhooks and the Salesforce emulator's Closed-Won callout."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
import stripe
from sqlalchemy import func, select

from contract.crm.salesforce_harness import Line, SalesforceDesk, http_session, running_emulator
from quote2cash.engine.runtime import Runtime
from quote2cash.sandbox.stripe import StripeEmulator
from quote2cash.store.schema import EVENTS_WITH_STATE, STATE_COLUMNS, events
from support.served import served as served

STRIPE_KEY = "sk_test_q2c_api"
T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float = 15.0
) -> T:
    """Poll ``probe`` until ``done`` holds (or the deadline passes); returns the last value."""
    import asyncio

    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


def logged(runtime: Runtime, **where: str) -> list[Any]:
    """Rows of the log matching ``where`` (column = value) with their dispatch state, read on a
    fresh connection."""
    q = select(events, *STATE_COLUMNS).select_from(EVENTS_WITH_STATE)
    for column, value in where.items():
        q = q.where(events.c[column] == value)
    with runtime.engine.connect() as conn:
        return list(conn.execute(q.order_by(events.c.pos)))


def log_size(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's documented scheme, computed here independently of the code under test."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def callout_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class StripeSandbox:
    def __init__(self, emulator: StripeEmulator, base_url: str) -> None:
        self.emulator = emulator
        self.base_url = base_url
        self.sdk = stripe.StripeClient(
            api_key=STRIPE_KEY, base_addresses={"api": base_url}, max_network_retries=0
        )

    def register(self, url: str) -> str:
        """A webhook endpoint for every event type at ``url``; returns its signing secret."""
        endpoint = self.sdk.v1.webhook_endpoints.create(
            params={"url": url, "enabled_events": ["*"]}
        )
        return str(endpoint.secret)

    def subscribe(self, contract_number: str, seats: int = 3) -> tuple[str, str]:
        """A customer on a monthly seat price, invoiced (active at once); (customer, sub) ids."""
        customer = self.sdk.v1.customers.create(
            params={"name": "Acme GmbH", "email": "ap@acme.example"}
        )
        product = self.sdk.v1.products.create(params={"name": "Seat"})
        price = self.sdk.v1.prices.create(
            params={
                "product": product.id,
                "currency": "eur",
                "unit_amount": 1500,
                "recurring": {"interval": "month"},
            }
        )
        sub = self.sdk.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": price.id, "quantity": seats}],
                "collection_method": "send_invoice",
                "days_until_due": 30,
                "metadata": {"contract_number": contract_number},
            }
        )
        return str(customer.id), str(sub.id)

    async def raw_event(self, http: aiohttp.ClientSession, event_id: str) -> bytes:
        """An event exactly as the API serves it (what a redelivery carries)."""
        async with http.get(
            f"{self.base_url}/v1/events/{event_id}",
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
        ) as response:
            assert response.status == 200
            return await response.read()

    async def attempts(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Every delivery attempt the emulator made so far, with the status it got back."""
        async with http.get(f"{self.base_url}/_emulator/webhook_attempts") as response:
            data: list[dict[str, Any]] = (await response.json())["data"]
        return data


@pytest.fixture(scope="module")
def stripe_running() -> Iterator[StripeSandbox]:
    emulator = StripeEmulator()
    base_url, stop = emulator.start_in_thread()
    try:
        yield StripeSandbox(emulator, base_url)
    finally:
        stop()


@pytest.fixture
def stripe_sandbox(stripe_running: StripeSandbox) -> StripeSandbox:
    stripe_running.emulator.reset()
    return stripe_running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceDesk]:
    """The Salesforce emulator (HTTPS, own thread) and a sales rep's simple-salesforce desk."""
    with running_emulator(tmp_path_factory.mktemp("sf")) as emulator:
        yield SalesforceDesk(emulator, http_session(emulator.ca_path))


@pytest.fixture
def crm_desk(desk: SalesforceDesk) -> Iterator[SalesforceDesk]:
    desk.reset()
    yield desk
    desk.admin("PATCH", "config", {"callout_url": None, "callout_secret": None})


def won_deal(desk: SalesforceDesk, contract_number: str) -> str:
    """An account, a product with a EUR price and a one-line deal moved to Closed Won."""
    account = desk.account("Callout GmbH", "EUR")
    product = desk.product(f"SEAT-{contract_number}", "Seat", {"EUR": "100.00"})
    return desk.deal(
        account, "EUR", [Line(product, 3, "100.00")], Contract_Number__c=contract_number
    )
