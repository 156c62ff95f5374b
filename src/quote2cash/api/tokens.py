"""API bearer tokens: shown once when created, stored only as their SHA-256, revocable.

A token's role decides what it may do: ``reader`` reads, ``operator`` also acts (it includes
every right of ``reader``). Creating and revoking tokens leaves an audit entry.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import insert, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import api_tokens

ROLES: Final = ("reader", "operator")
"""Weakest first: a role holds the rights of every role before it."""
PREFIX: Final = "q2c_"


class TokenError(ValueError):
    """A refused token operation; the message says which token and why (never its value)."""


@dataclass(frozen=True)
class ApiToken:
    """What is known of a token after creation: never its value."""

    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def role_allows(role: str, needed: str) -> bool:
    """True if ``role`` holds the rights of ``needed``."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def create_token(runtime: Runtime, name: str, role: str, *, actor: str) -> str:
    """A new token for ``name``; its value is returned here and nowhere else, ever."""
    if role not in ROLES:
        raise TokenError(f"token {name!r}: role {role!r} is unknown; expected one of {list(ROLES)}")
    if not name.strip() or len(name) > 100:
        raise TokenError("token name must be 1 to 100 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        active = conn.execute(
            select(api_tokens.c.id).where(
                api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)
            )
        ).first()
        if active is not None:
            raise TokenError(f"token {name!r} already exists; revoke it first or pick another name")
        conn.execute(
            insert(api_tokens).values(
                name=name, role=role, token_hash=token_hash(token), created_at=now, created_by=actor
            )
        )
        append_audit(
            conn, [AuditEntry(actor, "api_token.created", name, details={"role": role})], now
        )
    return token


def revoke_token(runtime: Runtime, name: str, *, actor: str) -> None:
    """Revoke the active token called ``name``; requests with it are refused from now on."""
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        revoked = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=actor)
        ).rowcount
        if not revoked:
            raise TokenError(f"no active token named {name!r}")
        append_audit(conn, [AuditEntry(actor, "api_token.revoked", name)], now)


def list_tokens(runtime: Runtime, *, include_revoked: bool = False) -> list[ApiToken]:
    q = select(
        api_tokens.c.id,
        api_tokens.c.name,
        api_tokens.c.role,
        api_tokens.c.created_at,
        api_tokens.c.created_by,
        api_tokens.c.revoked_at,
    ).order_by(api_tokens.c.id)
    if not include_revoked:
        q = q.where(api_tokens.c.revoked_at.is_(None))
    with runtime.engine.connect() as conn:
        return [ApiToken(*row) for row in conn.execute(q)]


def authenticate(runtime: Runtime, token: str) -> ApiToken | None:
    """The active token with this value, or None (unknown or revoked)."""
    if not token.startswith(PREFIX):
        return None
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(
                api_tokens.c.id,
                api_tokens.c.name,
                api_tokens.c.role,
                api_tokens.c.created_at,
                api_tokens.c.created_by,
                api_tokens.c.revoked_at,
            ).where(api_tokens.c.token_hash == token_hash(token), api_tokens.c.revoked_at.is_(None))
        ).first()
    return None if row is None else ApiToken(*row)
