"""master data: cross-references, customer hierarchy, golden customers, steward queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import quote2cash.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Utc = quote2cash.store.types.UtcDateTime
CURRENT = sa.text("valid_to IS NULL")


def upgrade() -> None:
    op.create_table(
        "md_global_ids",
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", Utc(timezone=True), nullable=False),
        sa.Column("merged_into", sa.String(length=64), nullable=True),
        sa.Column("merged_at", Utc(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into"],
            ["md_global_ids.global_id"],
            name=op.f("fk_md_global_ids_merged_into_md_global_ids"),
        ),
        sa.PrimaryKeyConstraint("global_id", name=op.f("pk_md_global_ids")),
    )
    with op.batch_alter_table("md_global_ids", schema=None) as batch_op:
        batch_op.create_index("ix_md_global_ids_merged_into", ["merged_into"], unique=False)

    op.create_table(
        "md_match_reviews",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("candidate_system", sa.String(length=50), nullable=False),
        sa.Column("candidate_local_id", sa.String(length=255), nullable=False),
        sa.Column("candidate_global_id", sa.String(length=64), nullable=False),
        sa.Column("existing_system", sa.String(length=50), nullable=False),
        sa.Column("existing_local_id", sa.String(length=255), nullable=False),
        sa.Column("existing_global_id", sa.String(length=64), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", Utc(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", Utc(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_md_match_reviews")),
        sa.UniqueConstraint(
            "candidate_system",
            "candidate_local_id",
            "existing_system",
            "existing_local_id",
            name="uq_md_match_reviews_pair",
        ),
    )
    with op.batch_alter_table("md_match_reviews", schema=None) as batch_op:
        batch_op.create_index("ix_md_match_reviews_status", ["status"], unique=False)

    op.create_table(
        "md_customer_parents",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("child_id", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("valid_from", Utc(timezone=True), nullable=False),
        sa.Column("valid_to", Utc(timezone=True), nullable=True),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["md_global_ids.global_id"],
            name=op.f("fk_md_customer_parents_child_id_md_global_ids"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["md_global_ids.global_id"],
            name=op.f("fk_md_customer_parents_parent_id_md_global_ids"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_md_customer_parents")),
    )
    with op.batch_alter_table("md_customer_parents", schema=None) as batch_op:
        batch_op.create_index("ix_md_customer_parents_child_id", ["child_id"], unique=False)
        batch_op.create_index(
            "ix_md_customer_parents_current",
            ["child_id"],
            unique=True,
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        )
        batch_op.create_index("ix_md_customer_parents_parent_id", ["parent_id"], unique=False)

    op.create_table(
        "md_customer_sources",
        sa.Column("system", sa.String(length=50), nullable=False),
        sa.Column("local_id", sa.String(length=255), nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("name_key", sa.String(length=500), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("postal_code", sa.String(length=32), nullable=True),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("tax_keys", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("source_updated_at", Utc(timezone=True), nullable=False),
        sa.Column("recorded_at", Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["global_id"],
            ["md_global_ids.global_id"],
            name=op.f("fk_md_customer_sources_global_id_md_global_ids"),
        ),
        sa.PrimaryKeyConstraint("system", "local_id", name=op.f("pk_md_customer_sources")),
    )
    with op.batch_alter_table("md_customer_sources", schema=None) as batch_op:
        batch_op.create_index("ix_md_customer_sources_country", ["country"], unique=False)
        batch_op.create_index("ix_md_customer_sources_domain", ["domain"], unique=False)
        batch_op.create_index("ix_md_customer_sources_global_id", ["global_id"], unique=False)

    op.create_table(
        "md_golden_customers",
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("updated_at", Utc(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["global_id"],
            ["md_global_ids.global_id"],
            name=op.f("fk_md_golden_customers_global_id_md_global_ids"),
        ),
        sa.PrimaryKeyConstraint("global_id", name=op.f("pk_md_golden_customers")),
    )
    op.create_table(
        "md_xrefs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("system", sa.String(length=50), nullable=False),
        sa.Column("local_id", sa.String(length=255), nullable=False),
        sa.Column("valid_from", Utc(timezone=True), nullable=False),
        sa.Column("valid_to", Utc(timezone=True), nullable=True),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["global_id"],
            ["md_global_ids.global_id"],
            name=op.f("fk_md_xrefs_global_id_md_global_ids"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_md_xrefs")),
    )
    with op.batch_alter_table("md_xrefs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_md_xrefs_current",
            ["kind", "system", "local_id"],
            unique=True,
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        )
        batch_op.create_index("ix_md_xrefs_global_id", ["global_id"], unique=False)
        batch_op.create_index("ix_md_xrefs_lookup", ["kind", "system", "local_id"], unique=False)


def downgrade() -> None:
    op.drop_table("md_xrefs")
    op.drop_table("md_golden_customers")
    op.drop_table("md_customer_sources")
    op.drop_table("md_customer_parents")
    op.drop_table("md_match_reviews")
    op.drop_table("md_global_ids")
