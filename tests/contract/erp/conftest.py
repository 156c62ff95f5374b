"""The ERP contract: one ``erp_world`` per implementation in ``harness.IMPLEMENTATIONS``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from contract.erp.harness import IMPLEMENTATIONS, ErpWorld
from quote2cash.connectors.roles import Erp


@pytest.fixture(scope="session", params=sorted(IMPLEMENTATIONS))
def erp_world(request: pytest.FixtureRequest) -> Iterator[ErpWorld]:
    with IMPLEMENTATIONS[request.param]() as world:
        yield world


@pytest.fixture
async def erp(erp_world: ErpWorld) -> AsyncIterator[Erp]:
    async with erp_world.connect() as connection:
        yield connection


@pytest.fixture
def unique() -> str:
    """A suffix that keeps one test's records apart from every other's."""
    return uuid.uuid4().hex[:10]
