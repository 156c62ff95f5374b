"""One new account against every known customer, in milliseconds: a SQLite index of block keys.

The incremental path onboarding calls: the same block keys, block limit and scoring as the batch
run, so a record gets the candidates ``q2c customers match`` would have compared it with.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from quote2cash.masterdata.blocking import block_keys
from quote2cash.masterdata.matching import Matcher, MatchKeys, Outcome, PairEvidence
from quote2cash.private_files import ensure_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS match_records (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, record_id TEXT NOT NULL, keys TEXT NOT NULL,
    UNIQUE (source, record_id));
CREATE TABLE IF NOT EXISTS match_blocks (block TEXT NOT NULL, id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS match_block_sizes (block TEXT PRIMARY KEY, size INTEGER NOT NULL);
"""
_BLOCK_INDEX = "CREATE INDEX IF NOT EXISTS match_blocks_by_block ON match_blocks (block)"


def _dump(keys: MatchKeys) -> str:
    return json.dumps(
        [
            keys.name_key,
            keys.country,
            keys.postal_code,
            keys.domain,
            sorted(keys.tax_keys),
            sorted(keys.inferred_countries),
            keys.street,
            keys.city,
            keys.legal_form,
        ]
    )


def _load(text: str) -> MatchKeys:
    name, country, postal, domain, tax, inferred, street, city, form = json.loads(text)
    return MatchKeys(
        name, country, postal, domain, frozenset(tax), frozenset(inferred), street, city, form
    )


class MatchIndex:
    """Known customers' match keys by block; ``path`` ``:memory:`` for a throw-away index."""

    def __init__(self, matcher: Matcher, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            ensure_private(path)
        self.matcher = matcher
        self.db = sqlite3.connect(str(path))
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, ids: Sequence[tuple[str, str]], keys: Sequence[MatchKeys]) -> None:
        """File records (bulk: a million in one call is fine)."""
        rules = self.matcher.config.blocking
        with self.db:
            start = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM match_records").fetchone()[0]
            self.db.executemany(
                "INSERT INTO match_records (id, source, record_id, keys) VALUES (?, ?, ?, ?)",
                (
                    (start + 1 + n, source, rid, _dump(k))
                    for n, ((source, rid), k) in enumerate(zip(ids, keys, strict=True))
                ),
            )
            self.db.execute("DROP INDEX IF EXISTS match_blocks_by_block")
            self.db.executemany(
                "INSERT INTO match_blocks (block, id) VALUES (?, ?)",
                (
                    (block, start + 1 + n)
                    for n, k in enumerate(keys)
                    for block in block_keys(k, rules)
                ),
            )
            self.db.execute(_BLOCK_INDEX)
            self.db.execute("DELETE FROM match_block_sizes")
            self.db.execute(
                "INSERT INTO match_block_sizes "
                "SELECT block, COUNT(*) FROM match_blocks GROUP BY block HAVING COUNT(*) > 1"
            )

    def match(self, record: tuple[str, str], keys: MatchKeys) -> list[PairEvidence]:
        """Every filed record this one auto-matches or needs review with, strongest first."""
        rules = self.matcher.config.blocking
        blocks = sorted(block_keys(keys, rules))
        marks = ",".join("?" * len(blocks))
        crowded = {
            block
            for block, size in self.db.execute(
                f"SELECT block, size FROM match_block_sizes WHERE block IN ({marks})", blocks
            )
            if size >= rules.max_block_size
        }
        useful = [b for b in blocks if b not in crowded]
        if not useful:
            return []
        marks = ",".join("?" * len(useful))
        rows = self.db.execute(
            "SELECT source, record_id, keys FROM match_records WHERE id IN "
            f"(SELECT id FROM match_blocks WHERE block IN ({marks}))",
            useful,
        ).fetchall()
        found = [
            self.matcher.compare_keys(record, (source, rid), keys, _load(text))
            for source, rid, text in rows
            if (source, rid) != record
        ]
        found = [e for e in found if e.outcome is not Outcome.NEW]
        return sorted(found, key=lambda e: (e.outcome is not Outcome.AUTO_MATCH, -e.score))

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM match_records").fetchone()[0])
