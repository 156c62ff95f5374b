"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import quote2cash.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("entity", sa.String(length=300), nullable=True),
        sa.Column("correlation_id", sa.String(length=100), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "events",
        sa.Column(
            "pos",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("time", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("correlation_id", sa.String(length=100), nullable=False),
        sa.Column("causation_id", sa.String(length=200), nullable=True),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("schema_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("recorded_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pos", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_events_source_event_id")),
        sa.UniqueConstraint("subject", "sequence", name=op.f("uq_events_subject_sequence")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_correlation_id", ["correlation_id"], unique=False)
        batch_op.create_index("ix_events_time", ["time"], unique=False)

    op.create_table(
        "maintenance_windows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("system", sa.String(length=50), nullable=False),
        sa.Column("starts_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_windows")),
    )
    with op.batch_alter_table("maintenance_windows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_maintenance_windows_system"), ["system"], unique=False)

    op.create_table(
        "operators",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.Text(), server_default=sa.text("('')"), nullable=False),
        sa.Column("created_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_operators")),
    )
    op.create_table(
        "replay_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("selector", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column(
            "requested_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("finance_sensitive", sa.Boolean(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_requests")),
    )
    op.create_table(
        "subjects",
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("pending", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("held_by", sa.BigInteger(), nullable=True),
        sa.Column("ready_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("waiting_on", sa.String(length=100), nullable=True),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_until", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_subjects")),
    )
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subjects_held_by",
            ["held_by"],
            unique=False,
            sqlite_where=sa.text("held_by IS NOT NULL"),
            postgresql_where=sa.text("held_by IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_subjects_ready",
            ["claimed_at"],
            unique=False,
            sqlite_where=sa.text("pending > 0 AND held_by IS NULL"),
            postgresql_where=sa.text("pending > 0 AND held_by IS NULL"),
        )

    op.create_table(
        "systems",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(length=100), nullable=True),
        sa.Column("changed_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_systems")),
    )
    op.create_table(
        "failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_pos", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("system", sa.String(length=50), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("retry_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_pos"], ["events.pos"], name=op.f("fk_failures_event_pos_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failures")),
    )
    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_failures_event_pos"), ["event_pos"], unique=False)

    op.create_table(
        "steps",
        sa.Column("event_pos", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=80), nullable=False),
        sa.Column("system", sa.String(length=50), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column(
            "completed_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["event_pos"], ["events.pos"], name=op.f("fk_steps_event_pos_events")
        ),
        sa.PrimaryKeyConstraint("event_pos", "name", name=op.f("pk_steps")),
    )

    op.bulk_insert(
        sa.table(
            "audit_head",
            sa.column("id", sa.Integer()),
            sa.column("seq", sa.BigInteger()),
            sa.column("hash", sa.String(64)),
        ),
        [{"id": 1, "seq": 0, "hash": "0" * 64}],
    )
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for the status update, so it can be a HOT update (no index churn).
        op.execute("ALTER TABLE events SET (fillfactor = 80)")
        op.execute("ALTER TABLE subjects SET (fillfactor = 70)")


def downgrade() -> None:
    op.drop_table("steps")
    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_failures_event_pos"))

    op.drop_table("failures")
    op.drop_table("systems")
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_subjects_ready",
            sqlite_where=sa.text("pending > 0 AND held_by IS NULL"),
            postgresql_where=sa.text("pending > 0 AND held_by IS NULL"),
        )
        batch_op.drop_index(
            "ix_subjects_held_by",
            sqlite_where=sa.text("held_by IS NOT NULL"),
            postgresql_where=sa.text("held_by IS NOT NULL"),
        )

    op.drop_table("subjects")
    op.drop_table("replay_requests")
    op.drop_table("operators")
    with op.batch_alter_table("maintenance_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_maintenance_windows_system"))

    op.drop_table("maintenance_windows")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_time")
        batch_op.drop_index("ix_events_correlation_id")

    op.drop_table("events")
    op.drop_table("audit_log")
    op.drop_table("audit_head")
