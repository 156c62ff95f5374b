"""audit: key id on each entry, a store id on the head, and (PostgreSQL) an append-only guard

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

from quote2cash.store.audit_guard import install_guard, remove_guard

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("key_id", sa.String(length=16), nullable=True))
    op.add_column("audit_head", sa.Column("store_id", sa.String(length=32), nullable=True))
    op.execute(
        sa.text("UPDATE audit_head SET store_id = :store_id WHERE store_id IS NULL").bindparams(
            store_id=uuid.uuid4().hex
        )
    )
    install_guard(op.get_bind())


def downgrade() -> None:
    remove_guard(op.get_bind())
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("store_id")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("key_id")
