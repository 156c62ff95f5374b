"""event_state: intake and dispatch state in separate rows

The wide ``events`` row (seven indexes) is written once at intake; where an event stands in
dispatch (status, attempts, category, last error, processed at) moves to a narrow row of its
own, so completing an event no longer rewrites the event row and every one of its index
entries. The pending-work partial index moves with the status. Existing rows are moved.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quote2cash.store.types import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_STATE = ("status", "attempts", "category", "last_error", "processed_at")
_PENDING = "status = 'pending'"


def upgrade() -> None:
    op.create_table(
        "event_state",
        sa.Column("pos", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("processed_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pos", name="pk_event_state"),
    )
    op.execute(
        "INSERT INTO event_state (pos, subject, status, attempts, category, last_error, "
        "processed_at) SELECT pos, subject, status, attempts, category, last_error, "
        "processed_at FROM events ORDER BY pos"
    )
    op.create_index(
        "ix_event_state_pending_subject_pos",
        "event_state",
        ["subject", "pos"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )
    if op.get_bind().dialect.name == "postgresql":
        # A completion rewrites the row: room on its page keeps the new version beside the old.
        op.execute("ALTER TABLE event_state SET (fillfactor = 80)")
    op.drop_index("ix_events_pending_subject_pos", table_name="events")
    for column in _STATE:  # SQLite >= 3.35 drops a column in place (no table copy, FKs kept)
        op.drop_column("events", column)


def downgrade() -> None:
    op.add_column(
        "events",
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
    )
    op.add_column(
        "events", sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("events", sa.Column("category", sa.String(32), nullable=True))
    op.add_column("events", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("events", sa.Column("processed_at", UtcDateTime(), nullable=True))
    op.execute(
        "UPDATE events SET status = s.status, attempts = s.attempts, category = s.category, "
        "last_error = s.last_error, processed_at = s.processed_at FROM event_state AS s "
        "WHERE s.pos = events.pos"
    )
    op.create_index(
        "ix_events_pending_subject_pos",
        "events",
        ["subject", "pos"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )
    op.drop_index("ix_event_state_pending_subject_pos", table_name="event_state")
    op.drop_table("event_state")
