"""usage_postings: one row per usage aggregate version posted to billing (or refused as late)

Revision ID: 0022
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quote2cash.store.types import UtcDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_postings",
        sa.Column("identifier", sa.String(length=300), nullable=False),
        sa.Column("aggregate_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subscription", sa.String(length=200), nullable=False),
        sa.Column("billing_subscription", sa.String(length=200), nullable=False),
        sa.Column("meter", sa.String(length=200), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.Column("aggregate_quantity", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("counted_at", UtcDateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("meter_id", sa.String(length=200), nullable=True),
        sa.Column("customer", sa.String(length=200), nullable=True),
        sa.Column("duplicate", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("posted_at", UtcDateTime(), nullable=False),
        sa.Column("batch_ids", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_usage_postings")),
        sa.UniqueConstraint(
            "aggregate_id", "version", name=op.f("uq_usage_postings_aggregate_id_version")
        ),
    )
    op.create_index(
        "ix_usage_postings_subscription_meter_period_start",
        "usage_postings",
        ["subscription", "meter", "period_start"],
    )
    op.create_index(
        "ix_usage_postings_billing_subscription_meter",
        "usage_postings",
        ["billing_subscription", "meter"],
    )


def downgrade() -> None:
    op.drop_index("ix_usage_postings_billing_subscription_meter", table_name="usage_postings")
    op.drop_index("ix_usage_postings_subscription_meter_period_start", table_name="usage_postings")
    op.drop_table("usage_postings")
