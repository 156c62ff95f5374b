"""Operator accounts for the console tests, made the way an admin makes them."""

from __future__ import annotations

from quote2cash.engine.control import add_operator
from quote2cash.engine.runtime import Runtime


def make_operator(runtime: Runtime, name: str, roles: list[str]) -> str:
    """An operator with ``roles`` whose password is settled; returns the password."""
    add_operator(runtime, name, [r for r in roles if r != "viewer"], actor="admin")
    return f"{name}-pw"
