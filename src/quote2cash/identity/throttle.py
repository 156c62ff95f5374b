"""Throttling of failed authentication, kept in the store so it holds across hub processes.

After ``MAX_FAILURES`` failures of one key (an operator name, a client) within ``WINDOW`` the key
is locked out, first for ``FIRST_LOCKOUT``, doubling with each further lockout up to
``MAX_LOCKOUT``; a success for a name clears it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from quote2cash.engine.runtime import Runtime
from quote2cash.store.db import read_connection
from quote2cash.store.schema import auth_throttle

WINDOW: Final = timedelta(minutes=15)
MAX_FAILURES: Final = 5
FIRST_LOCKOUT: Final = timedelta(minutes=5)
MAX_LOCKOUT: Final = timedelta(hours=24)
KEY_LENGTH: Final = 300


def name_key(name: str) -> str:
    return f"name:{name}"[:KEY_LENGTH]


def client_key(client: str) -> str:
    return f"client:{client}"[:KEY_LENGTH]


def token_client_key(client: str) -> str:
    return f"token-client:{client}"[:KEY_LENGTH]


def locked(runtime: Runtime, keys: Iterable[str]) -> bool:
    """True if any of ``keys`` is locked out now."""
    with read_connection(runtime.engine) as conn:
        return locked_in(conn, keys, runtime.clock.now())


def locked_in(conn: Connection, keys: Iterable[str], now: datetime) -> bool:
    """``locked`` on a connection the caller already holds (one round trip with its own reads)."""
    row = conn.execute(
        select(auth_throttle.c.key).where(
            auth_throttle.c.key.in_(list(keys)), auth_throttle.c.locked_until > now
        )
    ).first()
    return row is not None


def record_failure(runtime: Runtime, keys: Iterable[str]) -> datetime | None:
    """Count one failure against each key, locking out a key that reached the limit; returns
    until when one of them is now locked out (None: none is)."""
    now = runtime.clock.now()
    latest: datetime | None = None
    with runtime.engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        for key in sorted(set(keys)):
            conn.execute(
                insert(auth_throttle)
                .values(key=key, failures=0, window_started_at=now, lockouts=0)
                .on_conflict_do_nothing(index_elements=[auth_throttle.c.key])
            )
            row = conn.execute(
                select(auth_throttle).where(auth_throttle.c.key == key).with_for_update()
            ).one()
            failures, started, lockouts = row.failures + 1, row.window_started_at, row.lockouts
            if now - started > WINDOW:
                failures, started = 1, now
                if row.locked_until is None or now - row.locked_until > MAX_LOCKOUT:
                    lockouts = 0
            locked_until = row.locked_until
            if failures >= MAX_FAILURES:
                lockouts += 1
                locked_until = now + min(FIRST_LOCKOUT * 2 ** min(lockouts - 1, 10), MAX_LOCKOUT)
                failures, started = 0, now
            conn.execute(
                update(auth_throttle)
                .where(auth_throttle.c.key == key)
                .values(
                    failures=failures,
                    window_started_at=started,
                    lockouts=lockouts,
                    locked_until=locked_until,
                )
            )
            if locked_until is not None and locked_until > now:
                latest = locked_until if latest is None else max(latest, locked_until)
    return latest


def clear(runtime: Runtime, key: str) -> None:
    """Forget the failures of ``key`` (after a successful sign-in of that name)."""
    with runtime.engine.begin() as conn:
        conn.execute(delete(auth_throttle).where(auth_throttle.c.key == key))
