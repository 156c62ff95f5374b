"""Insert-or-update of one row by its key, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert_row(conn: Connection, table: Table, values: dict[str, Any], *, key: str) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={k: stmt.excluded[k] for k in values if k != key},
        )
    )
