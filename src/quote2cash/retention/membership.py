"""``column IN (many values)`` on either store: the backend's own way (sibling modules), in parts
it accepts. PostgreSQL takes one array parameter per part (a long ``IN`` list costs more to
send and parse than the statement's work); SQLite an expanded list under its variable limit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from sqlalchemy import ColumnElement, Connection

from quote2cash.retention import membership_postgres, membership_sqlite

_BACKENDS: dict[str, ModuleType] = {
    "postgresql": membership_postgres,
    "sqlite": membership_sqlite,
}


def in_parts(
    conn: Connection, column: ColumnElement[Any], values: Sequence[Any]
) -> Iterator[ColumnElement[bool]]:
    """One condition per part of ``values``; together they select every value."""
    backend = _BACKENDS[conn.dialect.name]
    size: int = backend.PART
    for i in range(0, len(values), size):
        yield backend.member_of(column, list(values[i : i + size]))
