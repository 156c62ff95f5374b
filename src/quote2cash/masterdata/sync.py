"""What the hub last wrote of each customer to each system, so an unchanged customer is not
written again.

A fingerprint is the SHA-256 of the canonical record as the hub sends it (plus anything else the
write depends on, e.g. the legal entity). ``unchanged`` answers the system's id only when the
last write carried the same fingerprint *and* the cross-reference still points at that id (a
merge or re-parent since then makes the hub write again). Recording happens after the write
succeeded; a crash in between only costs one idempotent write more.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, select

from quote2cash.engine.clock import Clock
from quote2cash.masterdata.xref import XrefStore
from quote2cash.store.schema import md_sync_state
from quote2cash.store.upsert import upsert_row


def fingerprint(record: BaseModel, **context: Any) -> str:
    """SHA-256 of the record's JSON form (keys sorted) and of ``context``."""
    payload = {"record": record.model_dump(mode="json"), "context": context}
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


class SyncState:
    def __init__(self, engine: Engine, clock: Clock, xref: XrefStore) -> None:
        self.engine, self.clock, self.xref = engine, clock, xref

    def unchanged(self, global_id: str, system: str, print_: str) -> str | None:
        """The system's id if the hub last wrote exactly this to it and still links it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(md_sync_state.c.fingerprint, md_sync_state.c.local_id).where(
                    md_sync_state.c.global_id == global_id, md_sync_state.c.system == system
                )
            ).first()
        if row is None or row.fingerprint != print_:
            return None
        return row.local_id if self.xref.local_id(global_id, system) == row.local_id else None

    def record(self, global_id: str, system: str, print_: str, local_id: str) -> None:
        with self.engine.begin() as conn:
            upsert_row(
                conn,
                md_sync_state,
                {
                    "global_id": global_id,
                    "system": system,
                    "fingerprint": print_,
                    "local_id": local_id,
                    "synced_at": self.clock.now(),
                },
                key=("global_id", "system"),
            )
