"""The CRM contract: one ``harness`` per implementation in ``harness.IMPLEMENTATIONS``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .harness import IMPLEMENTATIONS, CrmHarness, HarnessFactory


@pytest.fixture(scope="session", params=sorted(IMPLEMENTATIONS))
def crm_backend(request: pytest.FixtureRequest) -> Iterator[HarnessFactory]:
    with IMPLEMENTATIONS[request.param]() as factory:
        yield factory


@pytest.fixture
async def harness(crm_backend: HarnessFactory) -> AsyncIterator[CrmHarness]:
    built = crm_backend()
    yield built
    await built.close()
