"""identity: operator accounts (passwords, email, disabled), tokens owned by operators with roles
and an expiry, sign-in throttling, console sessions

Existing operators keep their roles (they get a password from an admin: `q2c operators reset NAME`);
existing tokens belong to whoever created them, ``reader`` becomes ``viewer``, and they expire
30 days after this migration.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import quote2cash.store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ACTIVE = sa.text("revoked_at IS NULL")
Utc = quote2cash.store.types.UtcDateTime


def upgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "must_change_password",
                sa.Boolean(),
                server_default=sa.text("false"),
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("disabled_at", Utc(timezone=True), nullable=True))
        batch_op.create_index("ix_operators_email", ["email"], unique=True)

    op.drop_index("ix_api_tokens_active_name", table_name="api_tokens")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("roles", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", Utc(timezone=True), nullable=True))
    tokens = sa.table(
        "api_tokens",
        sa.column("role", sa.String()),
        sa.column("roles", sa.Text()),
        sa.column("owner", sa.String()),
        sa.column("created_by", sa.String()),
        sa.column("expires_at", Utc(timezone=True)),
    )
    expiry = datetime.now(UTC) + timedelta(days=30)
    op.execute(
        tokens.update().values(
            owner=tokens.c.created_by,
            roles=sa.case((tokens.c.role == "reader", "viewer"), else_="viewer,operator"),
            expires_at=expiry,
        )
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("owner", existing_type=sa.String(length=100), nullable=False)
        batch_op.alter_column("roles", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("expires_at", existing_type=Utc(timezone=True), nullable=False)
        batch_op.drop_column("role")
    op.create_index(
        "ix_api_tokens_active_name",
        "api_tokens",
        ["name"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )

    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", Utc(timezone=True), nullable=False),
        sa.Column("lockouts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", Utc(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_throttle")),
    )
    op.create_table(
        "operator_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=100), nullable=False),
        sa.Column("created_at", Utc(timezone=True), nullable=False),
        sa.Column("expires_at", Utc(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_operator_sessions")),
    )
    op.create_index(
        op.f("ix_operator_sessions_operator"), "operator_sessions", ["operator"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_sessions_operator"), table_name="operator_sessions")
    op.drop_table("operator_sessions")
    op.drop_table("auth_throttle")
    op.drop_index("ix_api_tokens_active_name", table_name="api_tokens")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=True))
    tokens = sa.table("api_tokens", sa.column("role", sa.String()), sa.column("roles", sa.Text()))
    op.execute(
        tokens.update().values(
            role=sa.case((tokens.c.roles.like("%operator%"), "operator"), else_="reader")
        )
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("role", existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column("expires_at")
        batch_op.drop_column("roles")
        batch_op.drop_column("owner")
    op.create_index(
        "ix_api_tokens_active_name",
        "api_tokens",
        ["name"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_index("ix_operators_email")
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("email")
        batch_op.drop_column("must_change_password")
        batch_op.drop_column("password_hash")
