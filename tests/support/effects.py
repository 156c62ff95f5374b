"""An external system for crash trials: a separate SQLite file that dedups by idempotency key.

It stands for Stripe or the ERP: a write with a key seen before changes nothing. Every write
attempt is counted, so a test can tell re-executed side effects from duplicated ones.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class EffectStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS effects (n INTEGER PRIMARY KEY AUTOINCREMENT,"
            " key TEXT UNIQUE NOT NULL, subject TEXT NOT NULL, sequence INTEGER NOT NULL,"
            " step TEXT NOT NULL)"
        )
        self.conn.execute("CREATE TABLE IF NOT EXISTS attempts (key TEXT NOT NULL)")

    def write(self, key: str, subject: str, sequence: int, step: str) -> int:
        self.conn.execute("INSERT INTO attempts(key) VALUES (?)", (key,))
        self.conn.execute(
            "INSERT OR IGNORE INTO effects(key, subject, sequence, step) VALUES (?, ?, ?, ?)",
            (key, subject, sequence, step),
        )
        row = self.conn.execute("SELECT n FROM effects WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    def rows(self) -> list[tuple[int, str, str, int, str]]:
        return self.conn.execute(
            "SELECT n, key, subject, sequence, step FROM effects ORDER BY n"
        ).fetchall()

    def attempts(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM attempts").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
