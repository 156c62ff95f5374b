"""master-data sync state: what the hub last wrote of each customer to each system

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import quote2cash.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "md_sync_state",
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=50), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("local_id", sa.String(length=255), nullable=False),
        sa.Column("synced_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["global_id"],
            ["md_global_ids.global_id"],
            name=op.f("fk_md_sync_state_global_id_md_global_ids"),
        ),
        sa.PrimaryKeyConstraint("global_id", "system", name=op.f("pk_md_sync_state")),
    )


def downgrade() -> None:
    op.drop_table("md_sync_state")
