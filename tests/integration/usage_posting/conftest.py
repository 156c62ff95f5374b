"""Usage posting against the Stripe emulator (driven by the hub's Stripe connector and the
official SDK), a real SQLite store and worker; accepted usage comes from the ledger test double."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe

from conftest import migrated_store
from quote2cash.connectors.registry import Systems
from quote2cash.connectors.stripe import StripeBilling
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.events import new_event
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.usage_posting import BATCH_ACCEPTED
from quote2cash.sandbox.stripe import StripeEmulator
from support.usage_ledger import MemoryUsageLedger

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)
UNIT_MINOR = "0.37"
"""The metered price per call in cents: 0.0037 EUR, finer than the currency."""


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[StripeEmulator, str]]:
    running = StripeEmulator()
    base_url, stop = running.start_in_thread()
    try:
        yield running, base_url
    finally:
        stop()


@dataclass
class UsageWorld:
    """One metered subscription on a test clock at JAN, a hub on its own store."""

    sdk: stripe.StripeClient
    runtime: Runtime
    deps: FlowDeps
    worker: Worker
    ledger: MemoryUsageLedger
    billing: StripeBilling
    db_url: str = ""
    stripe_url: str = ""
    emulator: StripeEmulator | None = None
    subscription: str = ""
    customer: str = ""
    clock: str = ""
    meter: str = ""
    _events: int = field(default=0)

    def subscribe(self, meter: str = "api_calls") -> None:
        self.meter = meter
        found = self.sdk.v1.billing.meters.create(
            params={
                "display_name": meter,
                "event_name": meter,
                "default_aggregation": {"formula": "sum"},
            }
        )
        product = self.sdk.v1.products.create(params={"name": meter})
        price = self.sdk.v1.prices.create(
            params={
                "product": product.id,
                "currency": "eur",
                "unit_amount_decimal": UNIT_MINOR,
                "recurring": {"interval": "month", "usage_type": "metered", "meter": found.id},
            }
        )
        self.clock = self.sdk.v1.test_helpers.test_clocks.create(
            params={"frozen_time": int(JAN.timestamp())}
        ).id
        customer = self.sdk.v1.customers.create(
            params={
                "name": "Metered GmbH",
                "payment_method": "pm_card_visa",
                "invoice_settings": {"default_payment_method": "pm_card_visa"},
                "test_clock": self.clock,
            }
        )
        self.customer = customer.id
        sub = self.sdk.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": price.id}]}
        )
        self.subscription = sub.id
        self.ledger.periods[sub.id] = [(JAN, FEB), (FEB, MAR), (MAR, APR)]

    def systems_yaml(self, folder: Path) -> Path:
        """The hub's billing connector as a ``systems.yaml`` the CLI loads (``--config``)."""
        path = folder / "systems.yaml"
        key = self.billing.config.api_key.get_secret_value()
        path.write_text(
            f"billing:\n  kind: stripe\n  settings:\n    api_key: {key}\n"
            f"    base_url: {self.stripe_url}\n"
        )
        return path

    def advance(self, to: datetime) -> None:
        self.sdk.v1.test_helpers.test_clocks.advance(
            self.clock, params={"frozen_time": int(to.timestamp())}
        )

    async def accept(self, *usage: tuple[str, datetime]) -> str:
        """A batch accepted by intake, announced as intake announces it; the worker runs."""
        batch = self.ledger.accept(self.subscription, self.meter, usage)
        await self.announce(batch)
        return batch

    async def announce(self, batch: str) -> None:
        self._events += 1
        self.runtime.log.append(
            new_event(
                BATCH_ACCEPTED,
                f"contract:{self.subscription}",
                {
                    "batch_id": batch,
                    "subscription": self.subscription,
                    "aggregates": self.ledger.touched.get(batch, []),
                },
                id=f"usage-{batch}-{self._events}",
            )
        )
        await self.worker.drain()

    def counted(self, start: datetime, end: datetime) -> Decimal:
        """What billing counted for the customer in [start, end), read with the SDK."""
        price_meter = self.sdk.v1.billing.meters.list().data
        (meter,) = [m for m in price_meter if m.event_name == self.meter]
        summary = self.sdk.v1.billing.meters.event_summaries.list(
            meter.id,
            params={
                "customer": self.customer,
                "start_time": int(start.timestamp()),
                "end_time": int(end.timestamp()),
            },
        )
        return Decimal(str(summary.data[0].aggregated_value))

    def usage_invoice_lines(self) -> list[Any]:
        """Every metered line of the subscription's invoices, oldest invoice first (SDK)."""
        invoices = self.sdk.v1.invoices.list(params={"subscription": self.subscription}).data
        lines = []
        for invoice in sorted(invoices, key=lambda i: i.created):
            for line in invoice.lines.data:
                if line.pricing and line.pricing.unit_amount_decimal == Decimal(UNIT_MINOR):
                    lines.append(line)
        return lines


@pytest.fixture
async def world(emulator: tuple[StripeEmulator, str], db_url: str) -> AsyncIterator[UsageWorld]:
    """On SQLite and on PostgreSQL (the postings are written by a projection on both)."""
    running, stripe_url = emulator
    running.reset()
    runtime = Runtime.open(migrated_store(db_url), sqlite_synchronous="NORMAL")
    billing = StripeBilling.for_sandbox(stripe_url)
    try:
        async with billing:
            deps = FlowDeps.build(runtime, Systems(billing=billing), packaged_config_dir())
            ledger = MemoryUsageLedger()
            deps.usage_ledger = ledger
            quick = RetryPolicy(max_attempts=5, base_seconds=0.05, cap_seconds=0.2)
            worker = Worker(runtime, build_registry(deps, quick), commit_interval=0.01)
            sdk = stripe.StripeClient(
                api_key=billing.config.api_key.get_secret_value(),
                base_addresses={"api": stripe_url},
                max_network_retries=0,
            )
            built = UsageWorld(
                sdk,
                runtime,
                deps,
                worker,
                ledger,
                billing,
                db_url=db_url,
                stripe_url=stripe_url,
                emulator=running,
            )
            built.subscribe()
            yield built
    finally:
        runtime.close()
