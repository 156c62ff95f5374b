"""Shared fixtures: a real store on SQLite and on PostgreSQL, and a hand-driven clock."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Every store the tests open signs its audit chain with one test key and checkpoints into one
# file of this run (records carry their store's id), so PostgreSQL stores leave no files behind.
os.environ.setdefault("Q2C_AUDIT_KEY", "quote2cash-tests-audit-key")
os.environ.setdefault(
    "Q2C_AUDIT_CHECKPOINT_FILE",
    str(Path(tempfile.mkdtemp(prefix="q2c-audit-")) / "checkpoints.jsonl"),
)

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime

PG_ADMIN_URL = os.environ.get("Q2C_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("Q2C_REQUIRE_SERVICES") == "1"
LONG = os.environ.get("Q2C_LONG") == "1"


def missing_service(reason: str) -> None:
    """Skip on a developer box; fail in CI, where every service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _pg_connect(autocommit: bool = True):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=autocommit, connect_timeout=3)


def make_pg_database() -> str:
    """A fresh database of our own on the machine's PostgreSQL server; returns its URL."""
    try:
        conn = _pg_connect()
    except Exception as exc:
        missing_service(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}")
        raise
    name = f"q2c_t_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _pg_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = make_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on both backends (the engine suite's one parametrized fixture)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    else:
        url = make_pg_database()
        yield url
        drop_pg_database(url)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def runtime(db_url: str, clock: ManualClock) -> Iterator[Runtime]:
    rt = Runtime.open(db_url, clock=clock, sqlite_synchronous="NORMAL")
    yield rt
    rt.close()
