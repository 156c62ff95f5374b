"""API tokens: each belongs to an operator, carries at most the owner's roles, expires, and can
be revoked. Shown once when issued, stored only as their SHA-256; a use re-checks the owner (a
disabled owner's tokens are refused, a role the owner lost is never carried), at most
``Q2C_TOKEN_CACHE_SECONDS`` after the last check in this process (``token_cache``)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import (
    ROLES,
    IdentityError,
    NotAllowed,
    NotAuthenticated,
    Operator,
    throttle,
)
from quote2cash.identity.records import join_roles, load_account, split_roles
from quote2cash.identity.token_cache import cache_for, forget_verified_tokens
from quote2cash.settings import get_settings
from quote2cash.store.db import read_connection
from quote2cash.store.schema import api_tokens, operators

log = logging.getLogger(__name__)

PREFIX: Final = "q2c_"
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,99}")
MAX_TOKEN_LENGTH: Final = 200


class TokenError(IdentityError):
    """A refused token operation; names the token and why (never its value)."""


@dataclass(frozen=True)
class TokenInfo:
    """What is known of a token after it was issued: never its value."""

    name: str
    owner: str
    roles: frozenset[str]
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_ttl() -> timedelta:
    return timedelta(days=get_settings().token_ttl_days)


def max_ttl() -> timedelta:
    return timedelta(days=get_settings().token_max_ttl_days)


def _carried(token_roles: frozenset[str], owner_roles: frozenset[str]) -> frozenset[str]:
    """The roles a token carries now: what it was issued with that its owner still holds
    ("viewer" is implied by any role on either side)."""
    held = owner_roles | ({"viewer"} if owner_roles else set())
    issued = token_roles | ({"viewer"} if token_roles else set())
    return issued & held


def issue_token(
    runtime: Runtime,
    owner_name: str,
    token_name: str,
    roles: Iterable[str],
    *,
    by: Operator,
    ttl: timedelta | None = None,
) -> str:
    """A new token for ``owner_name``, issued by that operator; returned here and never again."""
    if by.name != owner_name:
        raise NotAllowed(
            f"operator {by.name!r} may not issue a token for {owner_name!r}; "
            "operators issue their own tokens"
        )
    if not NAME.fullmatch(token_name):
        raise TokenError(
            f"token name {token_name!r} is not valid: 1 to 100 letters, digits or . _ @ : -"
        )
    wanted = frozenset(r.strip() for r in roles if r.strip())
    unknown = sorted(wanted - set(ROLES))
    if unknown or not wanted:
        raise TokenError(
            f"token {token_name!r}: role(s) {unknown or []} not valid; give one or more of "
            f"{list(ROLES)}"
        )
    lifetime = default_ttl() if ttl is None else ttl
    if lifetime <= timedelta(0) or lifetime > max_ttl():
        raise TokenError(
            f"token {token_name!r}: lifetime {lifetime} must be more than 0 and at most "
            f"{max_ttl().days} days (Q2C_TOKEN_MAX_TTL_DAYS)"
        )
    lacking = sorted(r for r in wanted if not by.holds(r))
    if lacking:
        raise NotAllowed(
            f"token {token_name!r} may not carry role(s) {lacking}: "
            f"operator {by.name!r} does not hold them"
        )
    token = PREFIX + secrets.token_urlsafe(32)
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        owner = load_account(conn, owner_name)
        if owner is None or owner.disabled:
            raise NotAllowed(f"operator {owner_name!r} is unknown or disabled")
        lost = sorted(wanted - _carried(wanted, owner.roles))
        if lost:
            raise NotAllowed(
                f"token {token_name!r} may not carry role(s) {lost}: "
                f"operator {owner_name!r} does not hold them"
            )
        active = conn.execute(
            select(api_tokens.c.id).where(
                api_tokens.c.name == token_name, api_tokens.c.revoked_at.is_(None)
            )
        ).first()
        if active is not None:
            raise TokenError(
                f"token {token_name!r} already exists; revoke it first or pick another name"
            )
        conn.execute(
            insert(api_tokens).values(
                name=token_name,
                owner=owner_name,
                roles=join_roles(wanted),
                token_hash=token_hash(token),
                created_at=now,
                created_by=by.name,
                expires_at=now + lifetime,
            )
        )
        append_audit(
            conn,
            [
                AuditEntry(
                    by.name,
                    "api_token.created",
                    f"token:{token_name}",
                    details={
                        "owner": owner_name,
                        "roles": sorted(wanted),
                        "expires_at": (now + lifetime).isoformat(),
                    },
                )
            ],
            now,
        )
    return token


def _refuse(runtime: Runtime, client: str, reason: str, message: str) -> NotAuthenticated:
    until = throttle.record_failure(runtime, [throttle.token_client_key(client)])
    if until is not None:
        cache_for(runtime.engine).locked_out(client, until)
    log.warning("token authentication failed from client %r: %s", client, reason)
    return NotAuthenticated(message)


def _well_formed(token: str) -> bool:
    return token.startswith(PREFIX) and len(token) <= MAX_TOKEN_LENGTH


def cached_operator(runtime: Runtime, token: str, *, client: str = "unknown") -> Operator | None:
    """The operator of a token this process verified moments ago (``token_cache``), without
    touching the store; None: ask ``authenticate_token``."""
    if not _well_formed(token):
        return None
    return cache_for(runtime.engine).operator(token_hash(token), client, runtime.clock.now())


def authenticate_token(runtime: Runtime, token: str, *, client: str = "unknown") -> Operator:
    """The operator a token acts for, with the roles it carries now; NotAuthenticated for an
    unknown, revoked or expired token, a disabled owner, or a client locked out by failures.
    A token verified in the last ``Q2C_TOKEN_CACHE_SECONDS`` is answered from this process's
    cache (bounds in ``token_cache``); otherwise the lockout and the token in one connection."""
    found = cached_operator(runtime, token, client=client)
    if found is not None:
        return found
    unknown = "the token is unknown, revoked or expired"
    cache = cache_for(runtime.engine)
    generation = cache.generation
    key = throttle.token_client_key(client)
    digest = token_hash(token) if _well_formed(token) else None
    now = runtime.clock.now()
    with read_connection(runtime.engine) as conn:
        locked, row = _lockout_and_token(conn, key, digest, now)
    if locked:
        log.warning("token authentication refused from client %r: locked out", client)
        raise NotAuthenticated("too many failed attempts from this client; try again later")
    cache.cleared(client)
    if row is None:
        raise _refuse(runtime, client, "unknown token", unknown)
    if row.revoked_at is not None:
        raise _refuse(runtime, client, f"token {row.name!r} is revoked", unknown)
    if now >= row.expires_at:
        raise _refuse(runtime, client, f"token {row.name!r} has expired", unknown)
    if row.owner_roles is None or row.disabled_at is not None:
        raise _refuse(
            runtime,
            client,
            f"token {row.name!r}: its owner {row.owner!r} is unknown or disabled",
            unknown,
        )
    roles = _carried(split_roles(row.roles), split_roles(row.owner_roles))
    operator = Operator(row.owner, roles, via="token", token_name=row.name)
    if digest is not None:
        cache.keep(digest, operator, row.expires_at, now, generation)
    return operator


def _lockout_and_token(conn: Connection, key: str, digest: str | None, now: datetime) -> Any:
    """Whether ``key`` is locked out, and the row of the token hashed to ``digest`` (None when
    locked out or no such token)."""
    locked = throttle.locked_in(conn, [key], now)
    row: Any = (
        conn.execute(
            select(
                api_tokens.c.name,
                api_tokens.c.owner,
                api_tokens.c.roles,
                api_tokens.c.expires_at,
                api_tokens.c.revoked_at,
                operators.c.roles.label("owner_roles"),
                operators.c.disabled_at,
            )
            .select_from(api_tokens.outerjoin(operators, operators.c.name == api_tokens.c.owner))
            .where(api_tokens.c.token_hash == digest)
        ).first()
        if digest is not None and not locked
        else None
    )
    return locked, row


def warm_token_checks(runtime: Runtime, connections: int) -> None:
    """Open ``connections`` of the store's pooled connections at once, each running the token
    check's statements for a hash no token has (nothing recorded, nothing cached), so the first
    requests of a freshly started web process do not each open one and plan them."""
    now = runtime.clock.now()
    with contextlib.ExitStack() as held:
        for _ in range(connections):
            conn = held.enter_context(read_connection(runtime.engine))
            _lockout_and_token(conn, "warm-up", "", now)


def revoke_token(runtime: Runtime, token_name: str, *, by: Operator) -> None:
    """Revoke the active token ``token_name`` (its owner or an admin); refused from now on."""
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        owner = conn.execute(
            select(api_tokens.c.owner).where(
                api_tokens.c.name == token_name, api_tokens.c.revoked_at.is_(None)
            )
        ).scalar()
        if owner is None:
            raise TokenError(f"no active token named {token_name!r}")
        if owner != by.name:
            by.require("admin", f"revoke token {token_name!r} of operator {owner!r}")
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.name == token_name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=by.name)
        )
        append_audit(
            conn,
            [
                AuditEntry(
                    by.name, "api_token.revoked", f"token:{token_name}", details={"owner": owner}
                )
            ],
            now,
        )
    forget_verified_tokens()


def list_tokens(runtime: Runtime, *, include_revoked: bool = False) -> list[TokenInfo]:
    """Tokens by name, owner and roles (never their values); active ones unless told."""
    query = select(
        api_tokens.c.name,
        api_tokens.c.owner,
        api_tokens.c.roles,
        api_tokens.c.created_at,
        api_tokens.c.created_by,
        api_tokens.c.expires_at,
        api_tokens.c.revoked_at,
    ).order_by(api_tokens.c.id)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    with runtime.engine.connect() as conn:
        return [
            TokenInfo(
                r.name,
                r.owner,
                split_roles(r.roles),
                r.created_at,
                r.created_by,
                r.expires_at,
                r.revoked_at,
            )
            for r in conn.execute(query)
        ]
