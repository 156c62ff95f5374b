"""api: quarantine of signed deliveries the hub could not understand; SQLite times zero-padded

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import op

import quote2cash.store.types

revision = "0008"
down_revision = "0007" if any(Path(__file__).parent.glob("0007_*.py")) else "0006"
"""0007 (identity) lands in a parallel branch; until it is merged this follows 0006."""
branch_labels = None
depends_on = None

_UNPADDED_YEAR = {
    1: "'000' || {c}",
    2: "'00' || {c}",
    3: "'0' || {c}",
}


def _pad_sqlite_times() -> None:
    """Event times an older release wrote with an unpadded year (``5-04-19 ...``) are rewritten
    zero-padded, so they sort as times."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for digits, padded in _UNPADDED_YEAR.items():
        pattern = "[0-9]" * digits + "-*"
        op.get_bind().execute(
            sa.text(f"UPDATE events SET time = {padded.format(c='time')} WHERE time GLOB :p"),
            {"p": pattern},
        )


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", quote2cash.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint("source", "body_sha256", name=op.f("uq_quarantine_source_body_sha256")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_status_id", ["status", "id"], unique=False)
    _pad_sqlite_times()


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_status_id")
    op.drop_table("quarantine")
