"""kpis: events found by type within a time range, failures by time, without a scan

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_type_time", "events", ["type", "time"])
    op.create_index("ix_failures_at", "failures", ["at"])


def downgrade() -> None:
    op.drop_index("ix_failures_at", table_name="failures")
    op.drop_index("ix_events_type_time", table_name="events")
