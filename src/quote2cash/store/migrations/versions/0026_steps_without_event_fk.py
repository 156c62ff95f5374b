"""steps: no foreign key to events (the group commit's per-step check)

A foreign key makes PostgreSQL run a lookup of the event row and lock it (``FOR KEY SHARE``, a
WAL record) for every step row written: about 3.7 us of the server's CPU per step, a quarter of
what the step and its audit entry cost it. Step rows are written only by the recorder, for
events it loaded as pending (never deleted: retention takes done events only, their steps in the
same transaction), so the check never fires; ``event_state`` has had no foreign key since 0017
for the same reason.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

FK = "fk_steps_event_pos_events"


def upgrade() -> None:
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.create_foreign_key(FK, "events", ["event_pos"], ["pos"])
