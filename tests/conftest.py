"""Shared fixtures: a real store on SQLite and on PostgreSQL, and a hand-driven clock."""

from __future__ import annotations

import os
import sqlite3
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


# -- SQLite stores already migrated: one template file per test process, copied ------------------
# Running every migration for each test's new SQLite store cost 0.3-0.5 s; a copy of a file this
# process migrated once costs a millisecond. A copy is what Runtime.open leaves in a new store
# (the schema at head, an empty log, the main chain's head at 0) with a store id of its own, so
# its checkpoints are its own. PostgreSQL stores are migrated as before: a database made from a
# migrated template costs about what the migrations do (CREATE DATABASE copies its files).
# Tests of migrating itself (test_schema, the upgrade tests) keep their empty stores.
_TEMPLATE: list[Path] = []


def migrated_store(url: str) -> str:
    """Make a SQLite ``url`` whose file does not exist yet a new store already migrated to head
    (an existing file, or a PostgreSQL URL, is left to Runtime.open); returns ``url``."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return url
    target = Path(str(make_url(url).database))
    if target.exists():
        return url
    if not _TEMPLATE:
        from quote2cash.store.db import migrate, open_engine

        template = Path(tempfile.mkdtemp(prefix="q2c-template-")) / "template.sqlite"
        engine = open_engine(f"sqlite:///{template}")
        migrate(engine)
        engine.dispose()
        _TEMPLATE.append(template)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_TEMPLATE[0].read_bytes())
    conn = sqlite3.connect(target)
    with conn:
        conn.execute("UPDATE audit_head SET store_id = ?", (uuid.uuid4().hex,))
    conn.close()
    return url


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
    rt = Runtime.open(migrated_store(db_url), clock=clock, sqlite_synchronous="NORMAL")
    yield rt
    rt.close()
