"""Opening the store: one place that knows the differences between SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import QueuePool, StaticPool

from quote2cash.private_files import PRIVATE_MODE, ensure_private

MIGRATIONS = Path(__file__).parent / "migrations"
RECYCLE_SECONDS: Final = 1800
"""PostgreSQL connections are replaced after this long (server-side idle timeouts, memory)."""
IDLE_PING_SECONDS: Final = 10.0
"""A PostgreSQL connection idle longer than this is pinged before use."""
_IDLE_SINCE: Final = "q2c_idle_since"
_READ_ONLY: Final = "q2c_read_only"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and drive them with psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_engine(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 5) -> Engine:
    """An engine whose transactions are safe for several worker processes on either backend.

    On SQLite every transaction but a ``read_connection``'s starts with ``BEGIN IMMEDIATE`` (no
    read-to-write upgrade deadlocks between processes), the journal is WAL, and ``synchronous``
    defaults to FULL so a committed event survives power loss, not only a process crash.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_database_file(Path(parsed.database))
        # Pooled connections stay open: closing the last WAL connection checkpoints the file,
        # which would cost milliseconds per transaction. In-memory databases get one connection.
        memory = parsed.database in (None, "", ":memory:")
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=StaticPool if memory else QueuePool,
            **({} if memory else {"pool_size": pool_size, "max_overflow": 2}),
        )
        _sqlite_hooks(engine, sqlite_synchronous)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=2, pool_recycle=RECYCLE_SECONDS)
    _ping_when_idle(engine, IDLE_PING_SECONDS)
    return engine


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """Check a pooled connection before use only if it sat idle ``idle`` s (a server restart or
    an idle timeout may have closed it); one in steady use is not pinged on every checkout. A
    dead one is replaced (the pool retries); one that dies in use invalidates the pool."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            lost = f"pooled connection lost while idle: {type(exc).__name__}"
            raise DisconnectionError(lost) from None


def kept_connections(engine: Engine) -> int:
    """How many connections the engine's pool keeps open between uses (1 for a single shared
    one, as an in-memory SQLite store has)."""
    return engine.pool.size() if isinstance(engine.pool, QueuePool) else 1


def read_connection(engine: Engine) -> Connection:
    """A connection for reads only, in autocommit: each statement reads the last committed state
    by itself (no BEGIN/ROLLBACK round trips; ``snapshot_connection`` when statements must
    agree). On SQLite it takes no lock, so in WAL it never waits for a worker's commit."""
    conn = engine.connect().execution_options(**{_READ_ONLY: True})
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


def _private_database_file(path: Path) -> None:
    """The database and its -wal/-shm files are 0600 (SQLite gives those the database's mode)."""
    if str(path).startswith("file:"):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_private(path)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.chmod(companion, PRIVATE_MODE)


def _sqlite_hooks(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if not conn.get_execution_options().get(_READ_ONLY, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def snapshot_connection(engine: Engine) -> Connection:
    """A connection whose reads all see one snapshot, so a reader never sees half a commit.

    PostgreSQL: REPEATABLE READ. SQLite: its transactions already read one snapshot (and this
    store's begin hook takes the write lock).
    """
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_initialised(engine: Engine) -> bool:
    return inspect(engine).has_table("events")
