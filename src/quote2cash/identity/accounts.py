"""Operator accounts: only an admin adds or changes operators, never their own roles; every
change is an audit entry. Passwords handed out here are one-time: they must be changed at the
first sign-in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, delete, func, insert, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import ROLES, IdentityError, NotAllowed, Operator
from quote2cash.identity.passwords import (
    hash_password,
    one_time_password,
    password_problem,
)
from quote2cash.identity.records import (
    OperatorAccount,
    join_roles,
    load_account,
    to_account,
)
from quote2cash.identity.signin import check_password
from quote2cash.identity.token_cache import forget_verified_tokens
from quote2cash.store.schema import operator_sessions, operators

log = logging.getLogger(__name__)

NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
EMAIL: Final = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
FIRST_ADMIN_ACTOR: Final = "q2c init"

__all__ = [
    "AccountError",
    "OperatorAccount",
    "add_operator",
    "admin_exists",
    "change_roles",
    "create_first_admin",
    "disable_operator",
    "enable_operator",
    "find_by_email",
    "get_operator",
    "list_operators",
    "parse_roles",
    "reset_password",
    "set_password",
]


class AccountError(IdentityError):
    """A refused account change (bad input, unknown or existing operator); says which and why."""


def parse_roles(roles: Iterable[str], *, name: str) -> frozenset[str]:
    """The roles as a set; unknown or no roles are refused naming the operator."""
    wanted = frozenset(r.strip() for r in roles if r.strip())
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise AccountError(f"operator {name!r}: unknown role(s) {unknown}; expected {list(ROLES)}")
    if not wanted:
        raise AccountError(f"operator {name!r}: give at least one role of {list(ROLES)}")
    return wanted


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise AccountError(
            f"operator name {name!r} is not valid: 1 to 100 letters, digits or . _ @ -, "
            "starting with a letter or digit"
        )


def _normal_email(email: str | None, *, name: str) -> str | None:
    if email is None or not email.strip():
        return None
    normal = email.strip().lower()
    if len(normal) > 320 or not EMAIL.fullmatch(normal):
        raise AccountError(f"operator {name!r}: email {email!r} is not an email address")
    return normal


def _audit(
    conn: Connection, now: datetime, by: str, action: str, name: str, **details: object
) -> None:
    append_audit(conn, [AuditEntry(by, action, f"operator:{name}", details=details or None)], now)


def _existing(conn: Connection, name: str) -> OperatorAccount:
    account = load_account(conn, name)
    if account is None:
        raise AccountError(f"operator {name!r} does not exist")
    return account


def admin_exists(runtime: Runtime) -> bool:
    """True if an enabled operator holds the admin role."""
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(operators.c.roles).where(operators.c.disabled_at.is_(None))
        ).scalars()
        return any("admin" in r.split(",") for r in rows)


def create_first_admin(runtime: Runtime, name: str = "admin") -> str:
    """The first admin with a one-time password (returned once); refused if an admin exists."""
    _check_name(name)
    if admin_exists(runtime):
        raise AccountError("an admin exists already; an admin adds operators (q2c operators add)")
    password = one_time_password()
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        if load_account(conn, name) is not None:
            raise AccountError(
                f"operator {name!r} exists but is no admin; choose another name for the admin"
            )
        conn.execute(
            insert(operators).values(
                name=name,
                roles="admin",
                created_at=now,
                password_hash=hash_password(password),
                must_change_password=True,
            )
        )
        _audit(conn, now, FIRST_ADMIN_ACTOR, "operator.added", name, roles=["admin"])
    return password


def add_operator(
    runtime: Runtime,
    name: str,
    roles: Iterable[str],
    *,
    by: Operator,
    email: str | None = None,
) -> str:
    """A new operator with a one-time password (returned once, changed at first sign-in)."""
    by.require("admin", f"add operator {name!r}")
    _check_name(name)
    wanted = parse_roles(roles, name=name)
    normal = _normal_email(email, name=name)
    password = one_time_password()
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        if load_account(conn, name) is not None:
            raise AccountError(
                f"operator {name!r} exists already; change roles with `q2c operators roles`"
            )
        if (
            normal
            and conn.execute(select(operators.c.name).where(operators.c.email == normal)).first()
        ):
            raise AccountError(f"operator {name!r}: email {normal!r} belongs to another operator")
        conn.execute(
            insert(operators).values(
                name=name,
                roles=join_roles(wanted),
                created_at=now,
                password_hash=hash_password(password),
                must_change_password=True,
                email=normal,
            )
        )
        _audit(conn, now, by.name, "operator.added", name, roles=sorted(wanted), email=normal)
    return password


def change_roles(runtime: Runtime, name: str, roles: Iterable[str], *, by: Operator) -> None:
    """Replace ``name``'s roles; tokens and sessions carry the new roles from their next use."""
    by.require("admin", f"change the roles of operator {name!r}")
    if name == by.name:
        raise NotAllowed(f"operator {by.name!r} may not change their own roles; another admin must")
    wanted = parse_roles(roles, name=name)
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        before = _existing(conn, name)
        conn.execute(
            update(operators).where(operators.c.name == name).values(roles=join_roles(wanted))
        )
        _audit(
            conn,
            now,
            by.name,
            "operator.roles_changed",
            name,
            before=sorted(before.roles),
            after=sorted(wanted),
        )
    forget_verified_tokens()


def disable_operator(runtime: Runtime, name: str, *, by: Operator) -> None:
    """``name`` can no longer sign in; its tokens and sessions are refused from now on."""
    by.require("admin", f"disable operator {name!r}")
    if name == by.name:
        raise NotAllowed(f"operator {by.name!r} may not disable themselves; another admin must")
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        account = _existing(conn, name)
        if account.disabled:
            return
        conn.execute(update(operators).where(operators.c.name == name).values(disabled_at=now))
        conn.execute(delete(operator_sessions).where(operator_sessions.c.operator == name))
        _audit(conn, now, by.name, "operator.disabled", name)
    forget_verified_tokens()


def enable_operator(runtime: Runtime, name: str, *, by: Operator) -> None:
    """Let a disabled operator sign in again (with the password they had)."""
    by.require("admin", f"enable operator {name!r}")
    if name == by.name:
        raise NotAllowed(f"operator {by.name!r} may not enable themselves; another admin must")
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        if not _existing(conn, name).disabled:
            return
        conn.execute(update(operators).where(operators.c.name == name).values(disabled_at=None))
        _audit(conn, now, by.name, "operator.enabled", name)


def reset_password(runtime: Runtime, name: str, *, by: Operator) -> str:
    """A new one-time password for ``name`` (returned once); their sessions are closed."""
    by.require("admin", f"reset the password of operator {name!r}")
    if name == by.name:
        raise NotAllowed(
            f"operator {by.name!r} changes their own password with `q2c operators password`"
        )
    password = one_time_password()
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        _existing(conn, name)
        conn.execute(
            update(operators)
            .where(operators.c.name == name)
            .values(password_hash=hash_password(password), must_change_password=True)
        )
        conn.execute(delete(operator_sessions).where(operator_sessions.c.operator == name))
        _audit(conn, now, by.name, "operator.password_reset", name)
    return password


def set_password(runtime: Runtime, name: str, old: str, new: str, *, client: str = "local") -> None:
    """Change one's own password, proven by the current (or one-time) one; throttled like a
    sign-in. Raises SignInRefused for a wrong ``old``, AccountError for an unacceptable ``new``."""
    check_password(runtime, name, old, client=client)
    problem = password_problem(new)
    if problem:
        raise AccountError(f"operator {name!r}: {problem}")
    if new == old:
        raise AccountError(f"operator {name!r}: the new password must differ from the old one")
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        conn.execute(
            update(operators)
            .where(operators.c.name == name)
            .values(password_hash=hash_password(new), must_change_password=False)
        )
        _audit(conn, now, name, "operator.password_changed", name)
    log.info("operator %r changed their password", name)


def get_operator(runtime: Runtime, name: str) -> OperatorAccount | None:
    with runtime.engine.connect() as conn:
        return load_account(conn, name)


def list_operators(runtime: Runtime) -> list[OperatorAccount]:
    with runtime.engine.connect() as conn:
        return [to_account(r) for r in conn.execute(select(operators).order_by(operators.c.name))]


def find_by_email(runtime: Runtime, email: str) -> OperatorAccount | None:
    """The operator with this email (compared case-insensitively), for OpenID Connect sign-in."""
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(operators).where(func.lower(operators.c.email) == email.strip().lower())
        ).first()
    return None if row is None else to_account(row)
