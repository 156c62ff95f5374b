"""A real legacy ERP process per test module, and connectors to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from quote2cash.connectors.legacy_erp import LegacyErp, LegacyErpConfig
from quote2cash.sandbox.legacy_erp import LegacyErpEndpoint, LegacyErpSandbox


@pytest.fixture(scope="module")
def legacy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("legacy-erp")


@pytest.fixture(scope="module")
def endpoint(legacy_dir: Path) -> Iterator[LegacyErpEndpoint]:
    sandbox = LegacyErpSandbox(legacy_dir, batch_seconds=0.05)
    try:
        yield sandbox.start()
    finally:
        sandbox.stop()


def config_for(endpoint: LegacyErpEndpoint, **options: object) -> LegacyErpConfig:
    return LegacyErpConfig.for_sandbox(
        endpoint.base_url, endpoint.username, endpoint.password, endpoint.drop_folder, **options
    )


@pytest.fixture
async def erp(endpoint: LegacyErpEndpoint) -> AsyncIterator[LegacyErp]:
    async with LegacyErp(config_for(endpoint)) as connection:
        yield connection


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
