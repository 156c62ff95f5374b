"""The stored operator account as the identity modules read it (never its password hash)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from quote2cash.store.schema import operators


@dataclass(frozen=True)
class OperatorAccount:
    """An operator's account: roles, contact, and whether it may sign in."""

    name: str
    roles: frozenset[str]
    email: str | None
    created_at: datetime
    disabled: bool
    must_change_password: bool
    has_password: bool


def split_roles(stored: str) -> frozenset[str]:
    return frozenset(r for r in stored.split(",") if r)


def join_roles(roles: frozenset[str]) -> str:
    return ",".join(sorted(roles))


def to_account(row: Any) -> OperatorAccount:
    return OperatorAccount(
        name=row.name,
        roles=split_roles(row.roles),
        email=row.email,
        created_at=row.created_at,
        disabled=row.disabled_at is not None,
        must_change_password=bool(row.must_change_password),
        has_password=row.password_hash is not None,
    )


def load_account(conn: Connection, name: str) -> OperatorAccount | None:
    row = conn.execute(select(operators).where(operators.c.name == name)).first()
    return None if row is None else to_account(row)


def load_password_hash(conn: Connection, name: str) -> tuple[OperatorAccount, str | None] | None:
    row = conn.execute(select(operators).where(operators.c.name == name)).first()
    return None if row is None else (to_account(row), row.password_hash)
