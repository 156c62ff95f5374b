"""A real Tryton server for the ERP tests: template once per session, a fresh clone per module.

Timings of the template build and of each clone+start are collected in ``TIMINGS`` and printed in
the terminal summary.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.sandbox.tryton import DEFAULT_PG_DSN, TemplateInfo, TrytonEndpoint, TrytonSandbox

REQUIRE_SERVICES = os.environ.get("Q2C_REQUIRE_SERVICES") == "1"
PG_DSN = os.environ.get("Q2C_TRYTON_PG_DSN", DEFAULT_PG_DSN)
TIMINGS: dict[str, list[float]] = {}


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _record(name: str, seconds: float) -> None:
    TIMINGS.setdefault(name, []).append(seconds)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("Tryton sandbox timings")
    for name, values in TIMINGS.items():
        shown = ", ".join(f"{v:.3f}s" for v in values)
        terminalreporter.write_line(f"{name}: {shown}")


def _require_tryton() -> None:
    if shutil.which("trytond", path=str(Path(sys.executable).parent)) is None:
        _missing("trytond is not installed in this venv (install the 'sandbox' extra)")


def _require_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(PG_DSN, dbname="postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        _missing(f"PostgreSQL at {PG_DSN} unreachable: {exc}")


def _template(backend: str) -> TemplateInfo:
    sandbox = TrytonSandbox(backend=backend, pg_dsn=PG_DSN)  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        info = sandbox.ensure_template()
        _record(f"{backend} ensure_template (cached or built)", time.monotonic() - started)
        _record(f"{backend} template build (as recorded when built)", info.build_seconds)
        return info
    finally:
        sandbox.stop()


@pytest.fixture(scope="session")
def tryton_template() -> TemplateInfo:
    _require_tryton()
    return _template("sqlite")


@pytest.fixture(scope="session")
def tryton_pg_template() -> TemplateInfo:
    _require_tryton()
    _require_postgres()
    return _template("postgresql")


def start_sandbox(backend: str = "sqlite") -> tuple[TrytonSandbox, TrytonEndpoint]:
    """A running server on a fresh clone; the caller stops it."""
    sandbox = TrytonSandbox(backend=backend, pg_dsn=PG_DSN)  # type: ignore[arg-type]
    endpoint = sandbox.start()
    _record(f"{backend} clone database", sandbox.clone_seconds or 0.0)
    _record(f"{backend} start server until ready", sandbox.startup_seconds or 0.0)
    return sandbox, endpoint


@pytest.fixture(scope="module")
def tryton_server(tryton_template: TemplateInfo) -> Iterator[TrytonEndpoint]:
    """One server per test module on its own fresh database (SQLite)."""
    sandbox, endpoint = start_sandbox("sqlite")
    try:
        yield endpoint
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def tryton_pg_server(tryton_pg_template: TemplateInfo) -> Iterator[TrytonEndpoint]:
    sandbox, endpoint = start_sandbox("postgresql")
    try:
        yield endpoint
    finally:
        sandbox.stop()


@pytest.fixture
async def erp(tryton_server: TrytonEndpoint) -> AsyncIterator[TrytonClient]:
    """The hub's API user (not admin), logged in."""
    async with tryton_server.client() as client:
        yield client
