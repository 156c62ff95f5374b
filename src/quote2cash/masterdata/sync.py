"""What the hub last wrote of each customer to each system, so an unchanged customer is not
written again.

A fingerprint is the SHA-256 of the canonical record as the hub sends it (plus anything else the
write depends on, e.g. the legal entity). ``unchanged`` answers the system's id only when the
last write carried the same fingerprint *and* the cross-reference still points at that id (a
merge or re-parent since then makes the hub write again). Recording happens after the write
succeeded; a crash in between only costs one idempotent write more.

A CRM account's own row (system ``crm``) holds ``account_fingerprint`` of the account as the hub
last synced it and expects the CRM to show it, write-back included: an account change whose
account still shows exactly that is the hub's own write coming back, not a person's edit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, select

from quote2cash.canonical import Customer
from quote2cash.engine.clock import Clock
from quote2cash.masterdata.ownership import IDENTITY_FIELDS, shown_value
from quote2cash.masterdata.xref import XrefStore
from quote2cash.store.schema import md_sync_state
from quote2cash.store.upsert import upsert_row

CRM_ACCOUNT = "crm"
"""The sync state's system for what the hub last synced of the CRM account itself."""
SHOWN_BY_HUB = frozenset({"legal_entity", "tax_ids", "credit_limit"})
"""Account fields the hub writes the ERP's values to; the CRM shows them in its own form."""
NOT_FROM_ACCOUNT = IDENTITY_FIELDS | {"tax_exemption"}
"""Ids (the hub's write-back) and the tax exemption, which the hub derives, never reads."""


def fingerprint(record: BaseModel, **context: Any) -> str:
    """SHA-256 of the record's JSON form (keys sorted) and of ``context``."""
    return _digest({"record": record.model_dump(mode="json"), "context": context})


def account_fingerprint(account: Customer) -> str:
    """SHA-256 of every account field a person can change: exact JSON values, except the fields
    the hub shows the ERP's values in, compared as people read them (``shown_value``)."""
    fields = account.model_dump(mode="json", exclude=set(NOT_FROM_ACCOUNT))
    for name in SHOWN_BY_HUB:
        fields[name] = shown_value(getattr(account, name))
    return _digest({"account": account.external_ids.get("crm"), "fields": fields})


def _digest(payload: dict[str, Any]) -> str:
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
