"""Intake cursors: how far each polled source has been read, kept with the log it feeds."""

from __future__ import annotations

from sqlalchemy import select

from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import intake_cursors
from quote2cash.store.upsert import upsert_row


def read_cursor(runtime: Runtime, source: str) -> str | None:
    """The cursor last saved for ``source`` (None: never polled)."""
    with runtime.engine.connect() as conn:
        return conn.execute(
            select(intake_cursors.c.cursor).where(intake_cursors.c.source == source)
        ).scalar_one_or_none()


def save_cursor(runtime: Runtime, source: str, cursor: str) -> None:
    """Remember ``cursor`` for ``source``; the next poll starts there."""
    with runtime.engine.begin() as conn:
        upsert_row(
            conn,
            intake_cursors,
            {"source": source, "cursor": cursor, "updated_at": runtime.clock.now()},
            key="source",
        )
