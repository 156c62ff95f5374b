"""Operators for tests: accounts made through quote2cash.identity, acting as an authentication
would return them (a password sign-in, or a token)."""

from __future__ import annotations

from datetime import timedelta

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.identity.accounts import add_operator, create_first_admin
from quote2cash.identity.tokens import authenticate_token, issue_token


def first_admin(runtime: Runtime, name: str = "admin") -> Operator:
    create_first_admin(runtime, name)
    return Operator(name, frozenset({"admin"}), via="password")


def new_operator(runtime: Runtime, admin: Operator, name: str, *roles: str) -> Operator:
    """An operator ``admin`` added with ``roles``, as their sign-in would return them."""
    add_operator(runtime, name, roles, by=admin)
    return Operator(name, frozenset(roles), via="password")


def token_of(
    runtime: Runtime,
    who: Operator,
    token_name: str | None = None,
    roles: tuple[str, ...] | None = None,
    ttl: timedelta | None = None,
) -> str:
    """A fresh API token of ``who`` (their roles unless told)."""
    return issue_token(
        runtime,
        who.name,
        token_name or f"{who.name}-token",
        roles or tuple(sorted(who.roles)),
        by=who,
        ttl=ttl,
    )


def via_token(runtime: Runtime, who: Operator) -> Operator:
    """``who`` as a token of theirs authenticates them."""
    return authenticate_token(runtime, token_of(runtime, who), client="test")
