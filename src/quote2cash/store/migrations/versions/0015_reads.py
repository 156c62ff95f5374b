"""reads: pending work found without reading history; GetInvoiceStatus's read model

A partial index on the pending events of a subject (the dispatcher's load reads only them), and
``invoice_status`` / ``invoice_keys`` built from the history already logged, so an upgraded store
answers GetInvoiceStatus as the log scan did.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quote2cash.store.types import UtcDateTime

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_pending_subject_pos",
        "events",
        ["subject", "pos"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "invoice_status",
        sa.Column("billing_id", sa.String(200), nullable=False),
        sa.Column("data_pos", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.String(300), nullable=True),
        sa.Column("number", sa.String(200), nullable=True),
        sa.Column("status", sa.String(64), nullable=True),
        sa.Column("currency", sa.String(16), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("amount_paid", sa.BigInteger(), nullable=True),
        sa.Column("amount_remaining", sa.BigInteger(), nullable=True),
        sa.Column("due_date", sa.BigInteger(), nullable=True),
        sa.Column("paid_at", sa.BigInteger(), nullable=True),
        sa.Column("as_of", UtcDateTime(), nullable=True),
        sa.Column("posted_in_erp", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column(
            "payment_applied_in_erp", sa.Boolean(), nullable=False, server_default=sa.text("false")
        ),
        sa.Column("crm_id", sa.String(200), nullable=True),
        sa.Column("refund_pos", sa.BigInteger(), nullable=True),
        sa.Column("refund_time", UtcDateTime(), nullable=True),
        sa.Column("refund_amount", sa.String(64), nullable=True),
        sa.Column("refund_currency", sa.String(16), nullable=True),
        sa.Column("refund_reversed", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.PrimaryKeyConstraint("billing_id", name="pk_invoice_status"),
    )
    op.create_index("ix_invoice_status_refund_pos", "invoice_status", ["refund_pos"])
    op.create_table(
        "invoice_keys",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("billing_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_invoice_keys"),
    )
    from quote2cash.readmodels.invoice_status import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("invoice_keys")
    op.drop_index("ix_invoice_status_refund_pos", table_name="invoice_status")
    op.drop_table("invoice_status")
    op.drop_index("ix_events_pending_subject_pos", table_name="events")
