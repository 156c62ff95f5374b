"""One reconciliation run: read the three systems, match, compare, propose repairs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.xref import XrefStore
from quote2cash.reconcile.compare import compare
from quote2cash.reconcile.model import Report
from quote2cash.reconcile.read import StoreCrossRefs, read_all
from quote2cash.reconcile.repair import with_events


async def reconcile(
    runtime: Runtime, systems: Any, *, since: datetime | None = None, page_size: int = 100
) -> Report:
    """A report of every drift between CRM, billing and ERP (objects created since ``since``)."""
    started = runtime.clock.now()
    snapshot = await read_all(runtime, systems, since=since, page_size=page_size)
    xref = StoreCrossRefs(XrefStore(runtime.engine, runtime.clock))
    drifts = with_events(runtime, compare(snapshot, xref))
    return Report(started, runtime.clock.now(), since, snapshot.counts(), tuple(drifts), snapshot)
