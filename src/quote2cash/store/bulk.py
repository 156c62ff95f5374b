"""PostgreSQL's COPY inside the caller's transaction: the cheapest way in for many rows, on the
server and in the client (psycopg formats rows in C; array parameters are escaped in Python)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import psycopg
from sqlalchemy import BigInteger, Boolean, Connection, DateTime, Integer, String, Text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeDecorator, TypeEngine

from quote2cash.store.schema import metadata


def _pg_type(kind: TypeEngine[object]) -> str:
    """The PostgreSQL type name psycopg's binary COPY takes for a column of the schema."""
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    for cls, name in (
        (BigInteger, "int8"),
        (Integer, "int4"),
        (Boolean, "bool"),
        (Text, "text"),
        (String, "varchar"),
    ):
        if isinstance(kind, cls):
            return name
    if isinstance(kind, DateTime) and kind.timezone:
        return "timestamptz"
    raise TypeError(f"no binary COPY type for {kind!r}")


@functools.cache
def column_types(table: str, columns: str) -> tuple[str, ...]:
    """``columns`` (comma-separated) of ``table``, as their PostgreSQL types, read off the schema
    (``store.schema``), so a migration that changes a column changes its COPY with it."""
    found = metadata.tables[table].c
    return tuple(_pg_type(found[name.strip()].type) for name in columns.split(","))


def copy_rows(
    conn: Connection,
    table: str,
    columns: str,
    rows: Iterable[Sequence[object]],
    *,
    binary: bool = False,
) -> None:
    """COPY ``rows`` into ``table (columns)``; a failure raises SQLAlchemy's error (a duplicate
    key its ``IntegrityError``), as an INSERT through the connection would. ``binary``: the rows
    go in binary, typed from the schema (``column_types``): the server parses no text."""
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = f"COPY {table} ({columns}) FROM STDIN"
    types = column_types(table, columns) if binary else None
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
