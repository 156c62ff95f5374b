"""The Billing contract: one ``harness`` per implementation in ``harness.IMPLEMENTATIONS``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from quote2cash.connectors.roles import Billing

from .harness import IMPLEMENTATIONS, BillingHarness, HarnessFactory


@pytest.fixture(scope="session", params=sorted(IMPLEMENTATIONS))
def billing_backend(request: pytest.FixtureRequest) -> Iterator[HarnessFactory]:
    with IMPLEMENTATIONS[request.param]() as factory:
        yield factory


@pytest.fixture
async def harness(billing_backend: HarnessFactory) -> AsyncIterator[BillingHarness]:
    built = billing_backend()
    built.reset()
    yield built
    await built.close()


@pytest.fixture
def billing(harness: BillingHarness) -> Billing:
    return harness.billing
