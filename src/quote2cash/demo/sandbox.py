"""The demo's three systems: the sandbox started by the orchestrator, as separate processes.

``DemoSandbox`` starts them (``q2c sandbox up`` in the demo's folder), hands out the hub's
connectors and each outside actor's own client (simple-salesforce for the sales reps, the stripe
SDK for customers, the ERP's own protocol for reading it: ``erp_reader``), and stops them again.
The ERP is Tryton, or the legacy ERP (SOAP + batch files) with ``erp="legacy"``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stripe

from quote2cash.connectors.legacy_erp import LegacyErp, LegacyErpClient, LegacyErpConfig
from quote2cash.connectors.registry import Systems
from quote2cash.connectors.roles import Erp
from quote2cash.connectors.salesforce import SalesforceCrm
from quote2cash.connectors.stripe import StripeBilling, StripeConfig
from quote2cash.connectors.stripe.config import CollectionMethod
from quote2cash.connectors.tryton import TrytonErp
from quote2cash.demo.erp_reader import ErpReader, LegacyReader, TrytonReader
from quote2cash.sandbox import orchestrator
from quote2cash.sandbox.systems import salesforce_config, tryton_config
from quote2cash.sandbox.tryton import TrytonEndpoint, load_endpoint

API_LIMIT = 100_000
"""The demo org's daily API allowance (the emulator's default, 15,000, is a real org's)."""


class DemoSetupError(RuntimeError):
    """The demo could not start; the message says what is missing."""


@dataclass
class DemoSandbox:
    folder: Path
    state: dict[str, Any]
    erp_endpoint: TrytonEndpoint | None

    @classmethod
    def up(cls, folder: Path, progress: Callable[[str], None], erp: str = "tryton") -> DemoSandbox:
        orchestrator.up(folder, erp=erp, progress=progress)
        state = orchestrator.read_state(folder)
        if state is None or ("tryton" not in state and "legacy_erp" not in state):
            raise DemoSetupError(f"the sandbox in {folder} left no state")
        endpoint = None
        if erp != "legacy":
            endpoint = load_endpoint(state["tryton"]["workdir"])
            if endpoint is None:
                raise DemoSetupError(f"the sandbox ERP in {folder} left no endpoint")
        sandbox = cls(folder, state, endpoint)
        sandbox.salesforce_admin("PATCH", "config", {"daily_api_limit": API_LIMIT})
        return sandbox

    @staticmethod
    def down(folder: Path) -> list[str]:
        """Stop whatever a (possibly earlier, crashed) demo left running in ``folder``."""
        state = orchestrator.read_state(folder)
        if state is None:
            return []
        if "tryton" in state:
            _stop_own_child(int(state["tryton"]["pid"]))
        return orchestrator.down(folder)

    @property
    def erp_name(self) -> str:
        """How the demo's summary names the ERP."""
        return "Tryton" if self.erp_endpoint is not None else "the legacy ERP"

    def _legacy_config(self) -> LegacyErpConfig:
        legacy = self.state["legacy_erp"]
        return LegacyErpConfig.for_sandbox(
            legacy["url"], legacy["username"], legacy["password"], legacy["drop_folder"]
        )

    def _erp(self) -> Erp:
        if self.erp_endpoint is not None:
            return TrytonErp(tryton_config(self.erp_endpoint))
        return LegacyErp(self._legacy_config())

    @property
    def stripe_url(self) -> str:
        return str(self.state["stripe"]["base_url"])

    @property
    def salesforce_url(self) -> str:
        return str(self.state["salesforce"]["instance_url"])

    @property
    def salesforce_ca(self) -> str:
        return str(self.state["salesforce"]["ca_file"])

    def systems(self) -> Systems:
        """The hub's connectors; billing collects by invoice (customers pay when they choose)."""
        return Systems(
            crm=SalesforceCrm(salesforce_config(self.salesforce_url, self.salesforce_ca)),
            erp=self._erp(),
            billing=StripeBilling(
                StripeConfig.for_sandbox(
                    self.stripe_url,
                    api_key=self.state["stripe"]["api_key"],
                    collection_method=CollectionMethod.SEND_INVOICE,
                )
            ),
        )

    def stripe(self) -> stripe.StripeClient:
        """The official SDK, as customers' browsers and the billing team use it."""
        return stripe.StripeClient(
            api_key=self.state["stripe"]["api_key"], base_addresses={"api": self.stripe_url}
        )

    @contextlib.asynccontextmanager
    async def erp_reader(self) -> AsyncIterator[ErpReader]:
        """The ERP as its own people read it: Tryton's JSON-RPC as admin, the legacy ERP's SOAP."""
        if self.erp_endpoint is not None:
            async with self.erp_endpoint.client(admin=True) as tryton:
                yield TrytonReader(tryton)
            return
        client = LegacyErpClient(self._legacy_config())
        try:
            yield LegacyReader(client)
        finally:
            await client.close()

    def salesforce(self) -> Any:
        """A simple-salesforce session, logged in as the sales org's user."""
        try:
            from simple_salesforce.api import Salesforce
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise DemoSetupError(
                "the demo's sales reps use simple-salesforce: pip install 'simple-salesforce>=1.12'"
            ) from None
        from quote2cash.sandbox.salesforce import (
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            DEFAULT_PASSWORD,
            DEFAULT_USERNAME,
        )

        http = self._http()
        answer = http.post(
            f"{self.salesforce_url}/services/oauth2/token",
            data={
                "grant_type": "password",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "username": DEFAULT_USERNAME,
                "password": DEFAULT_PASSWORD,
            },
            timeout=30,
        )
        if answer.status_code != 200:
            raise DemoSetupError(f"the CRM refused the sales org's login ({answer.status_code})")
        return Salesforce(
            instance_url=self.salesforce_url,
            session_id=answer.json()["access_token"],
            session=http,
        )

    def salesforce_admin(self, method: str, action: str, body: dict[str, Any]) -> None:
        with contextlib.closing(self._http()) as http:
            answer = http.request(
                method, f"{self.salesforce_url}/_emulator/{action}", json=body, timeout=30
            )
            if answer.status_code != 200:
                raise DemoSetupError(f"CRM emulator {action}: {answer.status_code} {answer.text}")

    def _http(self) -> Any:
        import requests

        session = requests.Session()
        session.trust_env = False
        session.verify = self.salesforce_ca
        return session


def _stop_own_child(pid: int, seconds: float = 10.0) -> None:
    """Stop the ERP server this process started, and reap it: unreaped, it stays a zombie that
    looks alive, and the sandbox's own stop would wait its full timeout for it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if finished:
            return
        time.sleep(0.05)
