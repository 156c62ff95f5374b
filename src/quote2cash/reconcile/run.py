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
from quote2cash.reconcile.usage import reconcile_usage
from quote2cash.usage.records import UsageLedger


async def reconcile(
    runtime: Runtime,
    systems: Any,
    *,
    since: datetime | None = None,
    page_size: int = 100,
    usage_ledger: UsageLedger | None = None,
) -> Report:
    """A report of every drift between CRM, billing and ERP (objects created since ``since``),
    and of usage: ingested (``usage_ledger``; None: not compared) vs posted vs counted vs
    invoiced per subscription meter and period."""
    started = runtime.clock.now()
    snapshot = await read_all(runtime, systems, since=since, page_size=page_size)
    xref = StoreCrossRefs(XrefStore(runtime.engine, runtime.clock))
    drifts = with_events(runtime, compare(snapshot, xref))
    periods, usage = await reconcile_usage(runtime, systems.billing, usage_ledger, since=since)
    counts = snapshot.counts()
    if periods:
        counts.setdefault("billing", {})["usage_period"] = len(periods)
    return Report(started, runtime.clock.now(), since, counts, (*drifts, *usage), snapshot)
