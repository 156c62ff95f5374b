"""A real Tryton for the connector's own tests: a fresh clone of the cached template per module."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from quote2cash.connectors.tryton import TrytonClient, TrytonErp
from quote2cash.sandbox.systems import tryton_config
from quote2cash.sandbox.tryton import DEFAULT_PG_DSN, TrytonEndpoint, TrytonSandbox

REQUIRE_SERVICES = os.environ.get("Q2C_REQUIRE_SERVICES") == "1"
PG_DSN = os.environ.get("Q2C_TRYTON_PG_DSN", DEFAULT_PG_DSN)


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _require_tryton() -> None:
    if shutil.which("trytond", path=str(Path(sys.executable).parent)) is None:
        _missing("trytond is not installed in this venv (install the 'sandbox' extra)")


@pytest.fixture(scope="module")
def tryton_server() -> Iterator[TrytonEndpoint]:
    _require_tryton()
    with TrytonSandbox(backend="sqlite") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def tryton_pg_server() -> Iterator[TrytonEndpoint]:
    _require_tryton()
    import psycopg

    try:
        psycopg.connect(PG_DSN, dbname="postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        _missing(f"PostgreSQL at {PG_DSN} unreachable: {exc}")
    with TrytonSandbox(backend="postgresql", pg_dsn=PG_DSN) as endpoint:
        yield endpoint


@pytest.fixture
async def connector(tryton_server: TrytonEndpoint) -> AsyncIterator[TrytonErp]:
    async with TrytonErp(tryton_config(tryton_server)) as erp:
        yield erp


@pytest.fixture
async def ledger(tryton_server: TrytonEndpoint) -> AsyncIterator[TrytonClient]:
    """A raw client to look at what the connector wrote (as the same API user)."""
    async with tryton_server.client() as client:
        yield client
