"""subjects: an index on leased subjects, so a claim finds lapsed leases first

A worker killed mid-batch leaves its subjects leased until ``lease_until``; the next claim
after that takes them before the queue of ready subjects (they had events in flight), reading
this small partial index instead of scanning every ready subject.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_subjects_leased",
        "subjects",
        ["lease_until"],
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_subjects_leased", table_name="subjects")
