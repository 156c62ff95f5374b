"""Append-only audit tables at the database: which backends can refuse edits, and how.

PostgreSQL gets triggers that refuse UPDATE, DELETE and TRUNCATE of ``audit_log``, DELETE and
TRUNCATE of ``audit_head``, and any head update that moves a chain backwards or changes the row's
chain or store id. A role that does not own the tables cannot drop or disable them
(docs/audit.md). SQLite has no roles, so a guard there would stop no one who can write the file;
it relies on the key and the checkpoints alone.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from quote2cash.store import audit_guard_postgres

_INSTALL: dict[str, Callable[[Connection], None]] = {
    "postgresql": audit_guard_postgres.install,
}
_REMOVE: dict[str, Callable[[Connection], None]] = {
    "postgresql": audit_guard_postgres.remove,
}


def install_guard(conn: Connection) -> None:
    _INSTALL.get(conn.dialect.name, _nothing)(conn)


def remove_guard(conn: Connection) -> None:
    _REMOVE.get(conn.dialect.name, _nothing)(conn)


def _nothing(conn: Connection) -> None:
    return None
