"""Console sessions: an opaque random id (the cookie), a CSRF token derived from it, an expiry.

Only the id's SHA-256 is stored; the CSRF token is a one-way function of the id, so it can be
put in pages without revealing the cookie. A session is void once expired, closed, or when its
operator is disabled, and it carries its operator's current roles.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, insert, select

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import NotAuthenticated, Operator
from quote2cash.identity.records import load_account
from quote2cash.store.db import read_connection
from quote2cash.store.schema import operator_sessions

DEFAULT_TTL: Final = timedelta(hours=8)
MAX_ID_LENGTH: Final = 200


@dataclass(frozen=True)
class Session:
    """A signed-in console session; ``id`` goes in the HttpOnly cookie, ``csrf`` in forms."""

    id: str
    csrf: str
    operator: str
    expires_at: datetime

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf, presented)


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _csrf(session_id: str) -> str:
    return hashlib.sha256(b"q2c-csrf:" + session_id.encode()).hexdigest()


def open_session(runtime: Runtime, operator: Operator, *, ttl: timedelta = DEFAULT_TTL) -> Session:
    """A new session for an operator who just signed in (password or OpenID Connect)."""
    if ttl <= timedelta(0):
        raise ValueError("a session's lifetime must be positive")
    now = runtime.clock.now()
    session_id = secrets.token_urlsafe(32)
    with runtime.engine.begin() as conn:
        account = load_account(conn, operator.name)
        if account is None or account.disabled:
            raise NotAuthenticated(f"operator {operator.name!r} is unknown or disabled")
        conn.execute(
            insert(operator_sessions).values(
                id_hash=_id_hash(session_id),
                operator=operator.name,
                created_at=now,
                expires_at=now + ttl,
            )
        )
    return Session(session_id, _csrf(session_id), operator.name, now + ttl)


def session_operator(runtime: Runtime, session_id: str) -> tuple[Operator, Session] | None:
    """The operator of a live session with their current roles; None if unknown, expired or
    the operator is disabled."""
    if not session_id or len(session_id) > MAX_ID_LENGTH:
        return None
    now = runtime.clock.now()
    with read_connection(runtime.engine) as conn:
        row = conn.execute(
            select(operator_sessions).where(operator_sessions.c.id_hash == _id_hash(session_id))
        ).first()
        account = load_account(conn, row.operator) if row is not None else None
    if row is None or account is None or account.disabled or now >= row.expires_at:
        return None
    session = Session(session_id, _csrf(session_id), row.operator, row.expires_at)
    return Operator(account.name, account.roles, via="session"), session


def close_session(runtime: Runtime, session_id: str) -> None:
    """Sign out: the session id is void from now on (closing an unknown one is harmless)."""
    with runtime.engine.begin() as conn:
        conn.execute(
            delete(operator_sessions).where(operator_sessions.c.id_hash == _id_hash(session_id))
        )


def close_expired_sessions(runtime: Runtime) -> int:
    """Forget sessions past their expiry; returns how many."""
    with runtime.engine.begin() as conn:
        result = conn.execute(
            delete(operator_sessions).where(operator_sessions.c.expires_at <= runtime.clock.now())
        )
    return int(result.rowcount or 0)
