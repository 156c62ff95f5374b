"""The CRM contract's fixture: one harness per implementation of the ``Crm`` role.

To add an implementation, add its name to ``IMPLEMENTATIONS`` and a branch in ``_backend``
returning a harness with the same methods as ``SalesforceHarness``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

if os.environ.get("Q2C_REQUIRE_SERVICES") == "1":
    import simple_salesforce  # noqa: F401
else:
    pytest.importorskip("simple_salesforce", reason="simple-salesforce (dev extra) not installed")

from .salesforce_harness import SalesforceHarness, http_session, running_emulator

IMPLEMENTATIONS = ["salesforce"]


@pytest.fixture(scope="session", params=IMPLEMENTATIONS)
def crm_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    yield from _backend(request.param, tmp_path_factory)


def _backend(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if name == "salesforce":
        with running_emulator(tmp_path_factory.mktemp("sf-schema")) as emulator:
            http = http_session(emulator.ca_path)
            try:
                yield (SalesforceHarness, emulator, http)
            finally:
                http.close()
        return
    raise AssertionError(f"no CRM implementation named {name!r}")


@pytest.fixture
async def harness(crm_backend: Any) -> AsyncIterator[SalesforceHarness]:
    factory, *resources = crm_backend
    built = factory(*resources)
    yield built
    await built.close()
