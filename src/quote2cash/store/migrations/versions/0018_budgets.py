"""budget_buckets, budget_slots: API budgets shared by every hub process (DESIGN 4.6)

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quote2cash.store.types import UtcDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_buckets",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("tokens", sa.Float(precision=53), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("blocked_until", UtcDateTime(), nullable=True),
        sa.Column("day_started", UtcDateTime(), nullable=True),
        sa.Column("day_used", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_budget_buckets")),
    )
    op.create_table(
        "budget_slots",
        sa.Column("budget", sa.String(length=120), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("budget", "slot", name=op.f("pk_budget_slots")),
    )


def downgrade() -> None:
    op.drop_table("budget_slots")
    op.drop_table("budget_buckets")
