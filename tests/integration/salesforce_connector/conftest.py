"""One emulator (with the CRM contract's assumed schema) per session, reset before each test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests

if os.environ.get("Q2C_REQUIRE_SERVICES") == "1":
    import simple_salesforce  # noqa: F401
else:
    pytest.importorskip("simple_salesforce", reason="simple-salesforce (dev extra) not installed")

from contract.crm.salesforce_harness import (
    SalesforceHarness,
    http_session,
    running_emulator,
)
from quote2cash.sandbox.salesforce import RunningEmulator


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with running_emulator(tmp_path_factory.mktemp("sf-connector")) as running:
        yield running


@pytest.fixture(scope="session")
def http(emulator: RunningEmulator) -> Iterator[requests.Session]:
    session = http_session(emulator.ca_path)
    yield session
    session.close()


@pytest.fixture
async def harness(emulator: RunningEmulator, http: requests.Session) -> AsyncIterator[Any]:
    built = SalesforceHarness(emulator, http)
    yield built
    await built.close()
