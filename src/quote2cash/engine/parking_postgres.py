"""Parking keys on PostgreSQL: key rows are locked in key order by one upsert (no deadlock)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection


def lock_keys(conn: Connection, keys: Collection[str]) -> None:
    """Create-or-lock each key's row until the transaction ends."""
    if not keys:
        return
    conn.exec_driver_sql(
        "INSERT INTO park_keys (key) SELECT k FROM unnest(%s::text[]) AS t(k) ORDER BY k "
        "ON CONFLICT (key) DO UPDATE SET key = excluded.key",
        (sorted(set(keys)),),
    )


def mark_released(conn: Connection, released_by: dict[str, str], now: datetime) -> None:
    """The first release of a key is kept (when and by which event)."""
    ordered = sorted(released_by.items())
    conn.exec_driver_sql(
        "UPDATE park_keys AS p SET released_at = %s, released_by = v.by "
        "FROM unnest(%s::text[], %s::text[]) AS v(key, by) "
        "WHERE p.key = v.key AND p.released_at IS NULL",
        (now, [k for k, _ in ordered], [b for _, b in ordered]),
    )
