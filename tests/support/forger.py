"""A database writer who edits the audit tables behind the hub's back.

On PostgreSQL the audit guard's triggers refuse such edits; the forger here is the superuser
who switches triggers off for the transaction (``session_replication_role = replica``), the
strongest writer the checkpoints and the key must still catch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, delete, update

from quote2cash.engine.audit import GENESIS, MAIN_CHAIN
from quote2cash.store.schema import audit_anchors, audit_head, audit_log


@contextmanager
def forging(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        yield conn


def wipe_audit(conn: Connection) -> None:
    """Rows gone, partition chains gone and main's head back at genesis (tests that reset a
    store between examples)."""
    conn.execute(delete(audit_log))
    conn.execute(delete(audit_anchors))
    conn.execute(delete(audit_head).where(audit_head.c.chain != MAIN_CHAIN))
    conn.execute(update(audit_head).values(seq=0, hash=GENESIS))
