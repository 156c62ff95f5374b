"""Parking keys on SQLite: the write lock (BEGIN IMMEDIATE) already serializes parks and
releases, so the key rows only need to exist."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection

from quote2cash.engine.dispatch_sql import sqlite_time


def lock_keys(conn: Connection, keys: Collection[str]) -> None:
    if not keys:
        return
    conn.exec_driver_sql(
        "INSERT INTO park_keys (key) VALUES (?) ON CONFLICT (key) DO NOTHING",
        [(k,) for k in sorted(set(keys))],
    )


def mark_released(conn: Connection, released_by: dict[str, str], now: datetime) -> None:
    conn.exec_driver_sql(
        "UPDATE park_keys SET released_at = ?, released_by = ? "
        "WHERE key = ? AND released_at IS NULL",
        [(sqlite_time(now), by, key) for key, by in sorted(released_by.items())],
    )
