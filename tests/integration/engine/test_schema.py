"""Migrating from empty gives exactly the declared schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select

from quote2cash.store.db import MIGRATIONS, current_revision, migrate, open_engine
from quote2cash.store.schema import audit_head, metadata

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_migrations_from_empty_match_declared_schema(db_url: str) -> None:
    engine = open_engine(db_url)
    migrate(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
        head = conn.execute(select(audit_head)).one()
    assert diff == [], f"schema drift between migrations and schema.py: {diff}"
    assert current_revision(engine) == HEAD
    assert head.seq == 0 and head.hash == "0" * 64
    migrate(engine)  # idempotent
    assert current_revision(engine) == HEAD
    engine.dispose()
