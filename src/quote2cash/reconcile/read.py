"""Reading each system for reconciliation: every page through the system's gate (its pause,
breaker, rate and concurrency budget), never from the hub's store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quote2cash.connectors.roles import Ledger, LedgerKind
from quote2cash.engine.errors import MappingError
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.xref import XrefStore
from quote2cash.reconcile.compare import BILLING, CRM, ERP, Snapshot

ROLES = (CRM, BILLING, ERP)


async def read_all(
    runtime: Runtime, systems: Any, *, since: datetime | None = None, page_size: int = 100
) -> Snapshot:
    """Customers, contracts and invoices of the three roles; a role missing is a MappingError."""
    snapshot = Snapshot(complete=since is None)
    for role in ROLES:
        ledger = getattr(systems, role, None)
        if not isinstance(ledger, Ledger):
            raise MappingError(
                f"reconciliation needs the {role} role with ledger reads; "
                f"configured: {type(ledger).__name__}"
            )
        for kind in LedgerKind:
            cursor: str | None = None
            while True:
                async with runtime.gates.call(role):
                    page = await ledger.ledger(kind, since=since, cursor=cursor, limit=page_size)
                snapshot.add(role, kind, page.items)
                if page.next_cursor is None or page.next_cursor == cursor:
                    break
                cursor = page.next_cursor
    return snapshot


class StoreCrossRefs:
    """``compare.CrossRefs`` over the hub's cross-reference store (the only store read)."""

    def __init__(self, xref: XrefStore) -> None:
        self.xref = xref

    def counterpart(self, kind: str, system: str, local_id: str, other: str) -> str | None:
        gid = self.xref.global_id_for(kind, system, local_id)
        return self.xref.local_id(gid, other) if gid else None
