"""engine: parked events and the keys that release them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import quote2cash.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "park_keys",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("released_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_park_keys")),
    )
    op.create_table(
        "parked_events",
        sa.Column("event_pos", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("park_key", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("parked_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deadline", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expired", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_pos"], ["events.pos"], name=op.f("fk_parked_events_event_pos_events")
        ),
        sa.PrimaryKeyConstraint("event_pos", name=op.f("pk_parked_events")),
    )
    with op.batch_alter_table("parked_events", schema=None) as batch_op:
        batch_op.create_index("ix_parked_events_park_key", ["park_key"], unique=False)
        batch_op.create_index(
            "ix_parked_events_deadline",
            ["deadline"],
            unique=False,
            sqlite_where=sa.text("expired = false"),
            postgresql_where=sa.text("expired = false"),
        )


def downgrade() -> None:
    with op.batch_alter_table("parked_events", schema=None) as batch_op:
        batch_op.drop_index("ix_parked_events_deadline")
        batch_op.drop_index("ix_parked_events_park_key")
    op.drop_table("parked_events")
    op.drop_table("park_keys")
