"""Migration 0007 keeps what existed: operators keep their roles (no password until an admin
resets it), tokens belong to whoever created them, ``reader`` becomes ``viewer``, and they now
expire; it goes down and up again cleanly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import NotAuthenticated, Operator
from quote2cash.identity.accounts import get_operator, reset_password
from quote2cash.identity.tokens import authenticate_token, token_hash
from quote2cash.store.db import MIGRATIONS, current_revision, migrate, open_engine


def test_existing_operators_and_tokens_are_carried_over(db_url: str) -> None:
    engine = open_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    command.upgrade(config, "0006")
    then = datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO operators (name, roles, created_at) VALUES (:n, :r, :t)"),
            [
                {"n": "maria", "r": "operator", "t": then},
                {"n": "fiona", "r": "operator,finance_approver", "t": then},
            ],
        )
        conn.execute(
            text(
                "INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) "
                "VALUES (:n, :r, :h, :t, :b)"
            ),
            [
                {"n": "dash", "r": "reader", "h": token_hash("q2c_dash"), "t": then, "b": "maria"},
                {"n": "bot", "r": "operator", "h": token_hash("q2c_bot"), "t": then, "b": "fiona"},
                {"n": "old", "r": "reader", "h": token_hash("q2c_old"), "t": then, "b": "ghost"},
            ],
        )
    migrate(engine)
    runtime = Runtime(engine)
    maria = get_operator(runtime, "maria")
    assert maria is not None and maria.roles == {"operator"} and not maria.has_password
    assert authenticate_token(runtime, "q2c_dash").roles == {"viewer"}
    bot = authenticate_token(runtime, "q2c_bot")
    assert (bot.name, bot.roles) == ("fiona", {"viewer", "operator"})
    with pytest.raises(NotAuthenticated):  # its creator is no operator
        authenticate_token(runtime, "q2c_old")
    with engine.connect() as conn:
        expiry = conn.execute(text("SELECT expires_at FROM api_tokens WHERE name = 'dash'"))
        value = expiry.scalar_one()
    expires = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    # an admin gives a migrated operator their first password
    admin = Operator("root", frozenset({"admin"}), via="password")
    assert reset_password(runtime, "maria", by=admin)
    command.downgrade(config, "0006")
    with engine.connect() as conn:
        roles = dict(conn.execute(text("SELECT name, role FROM api_tokens")).all())
    assert roles == {"dash": "reader", "bot": "operator", "old": "reader"}
    migrate(engine)
    assert current_revision(engine) == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine.dispose()
