"""archive_runs: one row per retention run that moved processed events to a Parquet file

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quote2cash.store.types import UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=False),
        sa.Column("via", sa.String(length=32), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("pos_min", sa.BigInteger(), nullable=False),
        sa.Column("pos_max", sa.BigInteger(), nullable=False),
        sa.Column("finance_cutoff", UtcDateTime(), nullable=True),
        sa.Column("other_cutoff", UtcDateTime(), nullable=True),
        sa.Column("restored_at", UtcDateTime(), nullable=True),
        sa.Column("restored_events", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_runs")),
    )


def downgrade() -> None:
    op.drop_table("archive_runs")
