"""Verification of the partitioned audit log: every chain, every head row, every anchor.

"main" is walked first, collecting the heads its signed ``audit.anchor`` entries name; each
partition chain must then hold those heads, so a chain deleted with its head row, cut back with its
head reset, or rewritten is named by the anchor that still lists it. An entry moved to another
chain fails its signature there (a partition chain's name is signed into its entries).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from quote2cash.engine.audit import (
    ANCHOR_ACTION,
    GENESIS,
    MAIN_CHAIN,
    AuditEntry,
    AuditHead,
    Verification,
    _digest,
    read_heads,
)
from quote2cash.engine.audit_key import AuditKey
from quote2cash.store.db import snapshot_connection
from quote2cash.store.schema import audit_log


class ChainBroken(Exception):
    """The first thing that does not hold: ``chain`` and ``seq`` name where."""

    def __init__(self, chain: str, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.chain, self.seq, self.reason = chain, seq, reason


@dataclass(frozen=True)
class Anchored:
    """A head that "main" entry ``by`` says chain had: entry ``seq`` with ``hash``."""

    seq: int
    hash: str
    by: int


class ChainVerifier:
    """One pass over every chain; ``run`` returns the Verification verify reports."""

    def __init__(self, engine: Engine, key: AuditKey, batch: int = 5000) -> None:
        self.engine = engine
        self.key = key
        self.batch = batch
        self.counts: dict[str, int] = {}
        self.anchored: dict[str, dict[int, Anchored]] = {}

    def run(self, checkpoint: tuple[int, str] | None = None) -> Verification:
        store_id: str | None = None
        try:
            # One snapshot: heads, anchors and chains as of one moment, while writers go on.
            with snapshot_connection(self.engine) as conn:
                heads = read_heads(conn)
                main = heads.get(MAIN_CHAIN)
                store_id = main.store_id if main else None
                self._verify_main(conn, main, checkpoint)
                partitions = set(heads) | self._chains_in_log(conn) | set(self.anchored)
                for chain in sorted(partitions - {MAIN_CHAIN}):
                    self._verify_partition(conn, chain, heads.get(chain))
        except ChainBroken as broken:
            return Verification(
                False,
                sum(self.counts.values()),
                broken.seq,
                broken.reason,
                self.key.key_id,
                store_id,
                chain=broken.chain,
                chains=dict(self.counts),
            )
        return Verification(
            True,
            sum(self.counts.values()),
            key_id=self.key.key_id,
            store_id=store_id,
            chains=dict(self.counts),
        )

    def _verify_main(
        self, conn: Connection, head: AuditHead | None, checkpoint: tuple[int, str] | None
    ) -> None:
        count, last = self._walk(conn, MAIN_CHAIN, checkpoint)
        if head is None:
            raise ChainBroken(MAIN_CHAIN, None, "audit head row is missing")
        self._check_head(MAIN_CHAIN, head, count, last)
        if checkpoint and checkpoint[0] > count:
            what = "wiped" if count == 0 else "truncated"
            raise ChainBroken(
                MAIN_CHAIN,
                count + 1,
                f"a signed checkpoint covers {checkpoint[0]} entries but the log has {count}: "
                f"entries {count + 1}..{checkpoint[0]} were removed ({what}, head reset)",
            )

    def _verify_partition(self, conn: Connection, chain: str, head: AuditHead | None) -> None:
        count, last_hash = self._walk(conn, chain, None)
        claims = self.anchored.get(chain, {})
        if claims:
            last = claims[max(claims)]
            if last.seq > count:
                if count == 0 and head is None:
                    raise ChainBroken(
                        chain,
                        1,
                        f"chain {chain} is missing: main entry {last.by} anchored it at entry "
                        f"{last.seq} (deleted together with its head row)",
                    )
                raise ChainBroken(
                    chain,
                    count + 1,
                    f"main entry {last.by} anchored chain {chain} at entry {last.seq} but it has "
                    f"{count}: entries {count + 1}..{last.seq} were removed "
                    "(truncated, head reset)",
                )
        if head is None:
            raise ChainBroken(chain, None, f"the head row of chain {chain} is missing")
        self._check_head(chain, head, count, last_hash)

    def _check_head(self, chain: str, head: AuditHead, count: int, last_hash: str) -> None:
        if head.seq == count and head.hash == last_hash:
            return
        if head.seq < count:
            seq, why = head.seq + 1, "head reset to an earlier point"
        elif head.seq > count:
            seq, why = count + 1, "truncated or edited"
        else:
            seq, why = count, "head hash edited"
        raise ChainBroken(
            chain, seq, f"head says {head.seq} entries but the chain has {count} ({why})"
        )

    def _walk(
        self, conn: Connection, chain: str, checkpoint: tuple[int, str] | None
    ) -> tuple[int, str]:
        """Check every entry of ``chain`` in order; returns how many there are and the last hash."""
        key, prev, expected = self.key, GENESIS, 1
        claims = self.anchored.get(chain, {})
        self.counts[chain] = 0
        while True:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.chain == chain, audit_log.c.seq >= expected)
                .order_by(audit_log.c.seq)
                .limit(self.batch)
            ).all()
            if not rows:
                break
            for row in rows:
                seq = int(row.seq)
                if seq != expected:
                    raise ChainBroken(chain, expected, f"entry {expected} is missing")
                if row.prev_hash != prev:
                    raise ChainBroken(chain, seq, "prev_hash does not match the entry before it")
                if row.key_id != key.key_id:
                    signer = f"key {row.key_id}" if row.key_id else "no key"
                    raise ChainBroken(
                        chain,
                        seq,
                        f"signed with {signer}, not the configured audit key {key.key_id} "
                        "(wrong key, or forged without it)",
                    )
                entry = AuditEntry(row.actor, row.action, row.entity, row.correlation_id)
                if _digest(key, prev, seq, row.at, entry, row.details, chain) != row.hash:
                    raise ChainBroken(
                        chain,
                        seq,
                        "content does not match its signed hash (edited, or moved from another "
                        "chain)"
                        if chain != MAIN_CHAIN
                        else "content does not match its signed hash (edited)",
                    )
                if checkpoint and seq == checkpoint[0] and row.hash != checkpoint[1]:
                    raise ChainBroken(
                        chain, seq, "differs from the signed checkpoint (the chain was rewritten)"
                    )
                claim = claims.get(seq)
                if claim is not None and claim.hash != row.hash:
                    raise ChainBroken(
                        chain,
                        seq,
                        f"differs from its anchor in main entry {claim.by} (the chain was "
                        "rewritten)",
                    )
                if chain == MAIN_CHAIN and row.action == ANCHOR_ACTION:
                    self._collect(seq, row.details)
                prev = row.hash
                expected += 1
                self.counts[chain] += 1
        return self.counts[chain], prev

    def _collect(self, by: int, details: str) -> None:
        """Remember the heads anchor entry ``by`` names (its signature held already)."""
        heads: Any = json.loads(details).get("heads", [])
        for head in heads if isinstance(heads, list) else []:
            try:
                chain, seq, digest = str(head["chain"]), int(head["seq"]), str(head["hash"])
            except (KeyError, TypeError, ValueError):
                continue
            self.anchored.setdefault(chain, {})[seq] = Anchored(seq, digest, by)

    def _chains_in_log(self, conn: Connection) -> set[str]:
        return {str(c) for c in conn.execute(select(audit_log.c.chain).distinct()).scalars()}
