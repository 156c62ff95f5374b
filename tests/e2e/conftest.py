"""The whole hub against the three real local systems: the Stripe and Salesforce emulators
(in threads), a real Tryton server, the product catalog seeded as ``q2c sandbox up`` seeds it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stripe

from conftest import migrated_store
from contract.crm.salesforce_harness import SalesforceDesk, http_session, running_emulator
from quote2cash.connectors.registry import Systems
from quote2cash.connectors.salesforce import SalesforceCrm
from quote2cash.connectors.stripe import StripeBilling, StripeConfig
from quote2cash.connectors.stripe.config import CollectionMethod
from quote2cash.connectors.tryton import TrytonErp
from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.customers import poll_account_merges
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import poll_amendments, poll_billing, poll_crm
from quote2cash.sandbox.seed import seed_salesforce, seed_stripe
from quote2cash.sandbox.stripe import StripeEmulator
from quote2cash.sandbox.systems import salesforce_config, tryton_config
from quote2cash.sandbox.tryton import TrytonEndpoint, TrytonSandbox
from support.invoice_reads import assert_read_model_matches_log

STRIPE_KEY = "sk_test_q2c_e2e"
CONFIG = packaged_config_dir()


@dataclass
class World:
    stripe_url: str
    desk: SalesforceDesk
    sf_url: str
    sf_ca: str
    erp: TrytonEndpoint

    def stripe(self) -> stripe.StripeClient:
        return stripe.StripeClient(api_key=STRIPE_KEY, base_addresses={"api": self.stripe_url})

    def systems(self, **billing: Any) -> Systems:
        """The hub's connectors; ``billing`` overrides Stripe settings (e.g. days_until_due)."""
        return Systems(
            crm=SalesforceCrm(salesforce_config(self.sf_url, self.sf_ca)),
            erp=TrytonErp(tryton_config(self.erp)),
            billing=StripeBilling(
                StripeConfig.for_sandbox(
                    self.stripe_url,
                    api_key=STRIPE_KEY,
                    **{
                        "collection_method": CollectionMethod.SEND_INVOICE,
                        "customer_lookup": "email",
                        **billing,
                    },
                )
            ),
        )

    def erp_client(self) -> TrytonClient:
        return self.erp.client(admin=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("e2e")
    emulator = StripeEmulator()
    stripe_url, stop_stripe = emulator.start_in_thread()
    sandbox = TrytonSandbox(folder / "tryton")
    try:
        endpoint = sandbox.start()
        with running_emulator(folder) as sf:
            desk = SalesforceDesk(sf, http_session(sf.ca_path))
            seed_stripe(stripe_url, STRIPE_KEY)
            asyncio.run(seed_salesforce(sf.instance_url, sf.ca_path))
            yield World(stripe_url, desk, sf.instance_url, sf.ca_path, endpoint)
    finally:
        sandbox.stop()
        stop_stripe()


@dataclass
class Hub:
    runtime: Runtime
    deps: FlowDeps
    worker: Worker
    systems: Systems

    async def settle(self, rounds: int = 8) -> None:
        """Poll both systems and drain the log until nothing new arrives."""
        for _ in range(rounds):
            assert self.systems.crm is not None and self.systems.billing is not None
            new = await poll_crm(self.runtime, self.systems.crm)
            new += await poll_amendments(self.runtime, self.systems.crm, self.deps.xref)
            new += await poll_account_merges(self.runtime, self.systems.crm)
            new += await poll_billing(self.runtime, self.systems.billing)
            report = await self.worker.drain()
            if new == 0 and report.processed == 0:
                return


@asynccontextmanager
async def running_hub(world: World, folder: Path, **billing: Any) -> AsyncIterator[Hub]:
    """A hub on its own SQLite store, connected to ``world`` (billing settings overridable)."""
    store = migrated_store(f"sqlite:///{folder / 'hub.sqlite'}")
    runtime = Runtime.open(store, sqlite_synchronous="NORMAL")
    try:
        systems = world.systems(**billing)
        async with systems:
            deps = FlowDeps.build(runtime, systems, CONFIG)
            worker = Worker(runtime, build_registry(deps), commit_interval=0.05)
            yield Hub(runtime, deps, worker, systems)
            # Every scenario (refunds, credits, payments, CRM ids) also checks GetInvoiceStatus's
            # read model against the log scan it replaced, by every id of every invoice.
            assert_read_model_matches_log(runtime, deps.xref)
    finally:
        runtime.close()


@pytest.fixture
async def hub(world: World, tmp_path: Path) -> AsyncIterator[Hub]:
    async with running_hub(world, tmp_path) as running:
        yield running


def sf_products(desk: SalesforceDesk) -> dict[str, Any]:
    rows = desk.sf.query("SELECT Id, ProductCode FROM Product2")["records"]
    return {r["ProductCode"]: r["Id"] for r in rows}
