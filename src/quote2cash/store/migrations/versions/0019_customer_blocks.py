"""md_customer_blocks: the golden record's source records by match block key, so onboarding
compares a new account with the candidates ``q2c customers match`` would (same block keys)

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "md_customer_blocks",
        sa.Column("block", sa.String(length=300), nullable=False),
        sa.Column("system", sa.String(length=50), nullable=False),
        sa.Column("local_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("block", "system", "local_id", name=op.f("pk_md_customer_blocks")),
    )
    op.create_index(
        "ix_md_customer_blocks_record", "md_customer_blocks", ["system", "local_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_md_customer_blocks_record", table_name="md_customer_blocks")
    op.drop_table("md_customer_blocks")
