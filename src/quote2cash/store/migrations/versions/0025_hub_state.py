"""hub_state: state every ``q2c serve`` process answers alike (the last reconciliation's report)

Many serve processes share one store; what one scheduled job produced is kept here, by name, so
any process serves the same answer. The scheduled jobs themselves run in one process at a time,
elected through ``outbox_lease`` (lease ``serve.schedule``).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quote2cash.store.types import UtcDateTime

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hub_state")),
    )


def downgrade() -> None:
    op.drop_table("hub_state")
