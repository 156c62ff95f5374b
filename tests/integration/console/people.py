"""Operator accounts for the console tests, made the way an admin makes them."""

from __future__ import annotations

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.identity.accounts import add_operator, create_first_admin, set_password


def make_admin(runtime: Runtime, name: str = "admin") -> Operator:
    create_first_admin(runtime, name)
    return Operator(name, frozenset({"admin"}), via="password")


def make_operator(runtime: Runtime, admin: Operator, name: str, roles: list[str]) -> str:
    """An operator ``admin`` added with ``roles`` whose one-time password was replaced, as at
    their first sign-in; returns the password."""
    one_time = add_operator(runtime, name, roles, by=admin)
    password = f"{name}: a long pass phrase 7"
    set_password(runtime, name, one_time, password)
    return password
