"""usage intake: batch receipts, the usage quarantine, aggregates per subscription meter and period

Revision ID: 0021
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quote2cash.store.types import UtcDateTime

revision = "0021"
down_revision = "0019"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "usage_batches",
        sa.Column("seq", BigId, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("origin", sa.String(length=500), nullable=True),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("submitted_by", sa.String(length=100), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("correlation_id", sa.String(length=100), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("duplicate", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("corrected", sa.Integer(), nullable=False),
        sa.Column("ledger_file", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_usage_batches")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_usage_batches_batch_id")),
    )
    op.create_table(
        "usage_quarantine",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("record_id", sa.String(length=255), nullable=True),
        sa.Column("line", sa.BigInteger(), nullable=True),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("corrected", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("resubmitted_batch", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_quarantine")),
    )
    op.create_index(
        "ix_usage_quarantine_status_id", "usage_quarantine", ["status", "id"], unique=False
    )
    op.create_table(
        "usage_aggregates",
        sa.Column("aggregate_id", sa.String(length=80), nullable=False),
        sa.Column("agg_key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subscription", sa.String(length=300), nullable=False),
        sa.Column("meter", sa.String(length=255), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.Column("unit", sa.String(length=50), nullable=False),
        sa.Column("quantity", sa.String(length=64), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("batch_ids", sa.Text(), nullable=False),
        sa.Column("last_batch_seq", sa.BigInteger(), nullable=False),
        sa.Column("handed_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("aggregate_id", name=op.f("pk_usage_aggregates")),
        sa.UniqueConstraint("agg_key", "version", name=op.f("uq_usage_aggregates_agg_key_version")),
    )
    op.create_index(
        "ix_usage_aggregates_sub_meter_period",
        "usage_aggregates",
        ["subscription", "meter", "period_start"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_usage_aggregates_sub_meter_period", table_name="usage_aggregates")
    op.drop_table("usage_aggregates")
    op.drop_index("ix_usage_quarantine_status_id", table_name="usage_quarantine")
    op.drop_table("usage_quarantine")
    op.drop_table("usage_batches")
