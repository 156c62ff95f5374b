"""The Billing contract's fixture: one harness per implementation of the ``Billing`` role.

To add an implementation, add its name to ``IMPLEMENTATIONS`` and a branch in ``_backend``
yielding a harness factory with the same methods as ``StripeEmulatorHarness``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from quote2cash.connectors.roles import Billing
from quote2cash.sandbox.stripe import StripeEmulator

from .harness import StripeEmulatorHarness

IMPLEMENTATIONS = ["stripe"]


@pytest.fixture(scope="session", params=IMPLEMENTATIONS)
def billing_backend(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    yield from _backend(request.param)


def _backend(name: str) -> Iterator[Callable[[], Any]]:
    if name == "stripe":
        emulator = StripeEmulator()
        base_url, stop = emulator.start_in_thread()
        try:
            yield lambda: StripeEmulatorHarness(emulator, base_url)
        finally:
            stop()
        return
    raise AssertionError(f"no Billing implementation named {name!r}")


@pytest.fixture
async def harness(billing_backend: Callable[[], Any]) -> AsyncIterator[StripeEmulatorHarness]:
    built = billing_backend()
    built.reset()
    yield built
    await built.close()


@pytest.fixture
def billing(harness: StripeEmulatorHarness) -> Billing:
    connector: Billing = harness.billing
    return connector
