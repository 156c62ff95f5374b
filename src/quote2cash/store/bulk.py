"""PostgreSQL's COPY inside the caller's transaction: the cheapest way in for many rows, on the
server and in the client (psycopg formats rows in C; array parameters are escaped in Python)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


def copy_rows(
    conn: Connection,
    table: str,
    columns: str,
    rows: Iterable[Sequence[object]],
    types: Sequence[str] | None = None,
) -> None:
    """COPY ``rows`` into ``table (columns)``; a failure raises SQLAlchemy's error (a duplicate
    key its ``IntegrityError``), as an INSERT through the connection would. With ``types`` (the
    columns' PostgreSQL types) the rows go in binary: the server parses no text."""
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = f"COPY {table} ({columns}) FROM STDIN"
    if types is not None:
        statement += " (FORMAT BINARY)"
    try:
        with raw.cursor() as cur, cur.copy(statement) as copy:
            if types is not None:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as err:  # as SQLAlchemy's: a deadlock victim's retry sees it too
        raise DBAPIError.instance(statement, None, err, psycopg.Error) from err
