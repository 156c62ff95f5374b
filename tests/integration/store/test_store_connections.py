"""Pooled PostgreSQL connections are not pinged on every checkout, yet one the server closed
while it sat idle (a restart, an idle timeout) is replaced before use, not handed to a request."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event, text

from quote2cash.store import db


def _terminate_sessions(url: str) -> int:
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        return len(
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            ).fetchall()
        )


def test_an_idle_connection_the_server_closed_is_replaced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
    engine = db.open_engine(pg_url, pool_size=1)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42
        assert _terminate_sessions(pg_url) >= 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 42 + 1")).scalar_one() == 43
        assert sent == ["SELECT 41 + 1", "SELECT 42 + 1"]  # the ping is not a statement here
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(pg_url: str) -> None:
    engine = db.open_engine(pg_url, pool_size=1)
    pings: list[object] = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda conn: pings.append(conn) or ping(conn)  # type: ignore[method-assign]
    try:
        for n in range(5):
            with engine.connect() as conn:
                assert conn.execute(text(f"SELECT {n}")).scalar_one() == n
        assert pings == []
    finally:
        engine.dispose()
