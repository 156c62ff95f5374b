"""A web process readies its store connections before it listens: the invoice read's kept
connections have run their statement, the pool's connections are open, and readying them
records, caches and answers nothing (a later unknown token is still refused and counted). A
burst of first requests with one token checks it in the store once; an unknown token's burst
counts every failure, as one request at a time would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import psycopg
import pytest
from sqlalchemy import event, func, select

from quote2cash.api.app import build_app
from quote2cash.engine.errors import DataError
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.status import get_invoice_status, warm_invoice_status
from quote2cash.identity import NotAuthenticated
from quote2cash.identity.tokens import authenticate_token, cached_operator, warm_token_checks
from quote2cash.masterdata.xref import XrefStore
from quote2cash.store.db import kept_connections
from quote2cash.store.schema import auth_throttle
from support.identity import first_admin, new_operator, token_of

from .conftest import served


@pytest.fixture
def pg_runtime(pg_url: str) -> Iterator[tuple[Runtime, str]]:
    runtime = Runtime.open(pg_url)
    yield runtime, pg_url
    runtime.close()


def backends_reading_invoices(url: str) -> int:
    """This database's server connections whose last statement was the invoice read."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'WITH ways AS%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_invoice_reads_are_ready_before_the_first_request(
    pg_runtime: tuple[Runtime, str],
) -> None:
    runtime, url = pg_runtime
    assert backends_reading_invoices(url) == 0
    warm_invoice_status(runtime, 3)
    assert backends_reading_invoices(url) == 3
    warm_invoice_status(runtime, 3)  # already ready: none more
    assert backends_reading_invoices(url) == 3
    with pytest.raises(DataError):
        get_invoice_status(runtime, XrefStore(runtime.engine, runtime.clock), "in_unknown")
    assert backends_reading_invoices(url) == 3  # answered on a ready connection, none opened


def test_readying_the_token_checks_records_and_caches_nothing(
    pg_runtime: tuple[Runtime, str],
) -> None:
    runtime, _ = pg_runtime
    dana = new_operator(runtime, first_admin(runtime), "dana", "viewer")
    token = token_of(runtime, dana)
    slots = kept_connections(runtime.engine)
    assert slots == 5
    warm_token_checks(runtime, slots)
    assert runtime.engine.pool.checkedin() == slots  # type: ignore[attr-defined]
    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(auth_throttle)).scalar_one() == 0
    assert cached_operator(runtime, token, client="test") is None
    assert authenticate_token(runtime, token, client="test").name == "dana"
    with pytest.raises(NotAuthenticated):
        authenticate_token(runtime, "q2c_" + "x" * 40, client="test")
    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(auth_throttle)).scalar_one() == 1


async def burst(http: aiohttp.ClientSession, base: str, token: str, count: int) -> list[int]:
    async def one() -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{base}/v1/systems", headers=headers) as r:
            return r.status

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_a_burst_of_first_requests_checks_its_token_once(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    dana = new_operator(runtime, first_admin(runtime), "dana", "viewer")
    token = token_of(runtime, dana)
    checks: list[str] = []

    def slow_token_check(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if "api_tokens" in statement:  # long enough for every request to arrive meanwhile
            checks.append(statement)
            time.sleep(0.3)

    async with served(build_app(runtime)) as base:
        event.listen(runtime.engine, "before_cursor_execute", slow_token_check)
        try:
            assert await burst(http, base, token, 12) == [200] * 12
            assert len(checks) == 1
            unknown = "q2c_" + "x" * 40
            assert await burst(http, base, unknown, 3) == [401] * 3
        finally:
            event.remove(runtime.engine, "before_cursor_execute", slow_token_check)
    assert len(checks) == 1 + 3  # each refused request checked for itself
    with runtime.engine.connect() as conn:
        counted = conn.execute(select(auth_throttle.c.failures)).scalars().all()
    assert counted == [3]
