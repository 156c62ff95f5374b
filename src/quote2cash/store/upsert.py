"""Insert-or-update of one row by its key, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert_row(
    conn: Connection, table: Table, values: dict[str, Any], *, key: str | tuple[str, ...]
) -> None:
    keys = (key,) if isinstance(key, str) else key
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys],
            set_={k: stmt.excluded[k] for k in values if k not in keys},
        )
    )


def insert_missing(
    conn: Connection, table: Table, values: dict[str, Any], *, key: str | tuple[str, ...]
) -> None:
    """Insert one row unless a row with its key exists (or is being inserted) already."""
    keys = (key,) if isinstance(key, str) else key
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[table.c[k] for k in keys])
    )
