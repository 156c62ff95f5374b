"""The latest three-way reconciliation, grouped by drift kind with a bar per kind."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from aiohttp import web

from quote2cash.console.context import console_of
from quote2cash.console.render import page
from quote2cash.reconcile.model import Drift, Report


def by_kind(report: Report) -> list[tuple[str, list[Drift]]]:
    groups: dict[str, list[Drift]] = defaultdict(list)
    for drift in report.drifts:
        groups[str(drift.kind)].append(drift)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


async def report(request: web.Request) -> web.StreamResponse:
    latest: Any = await asyncio.to_thread(console_of(request).reconciliation)
    if not isinstance(latest, Report):
        return page(request, "reconciliation.html", report=None, groups=[], widest=1)
    groups = by_kind(latest)
    widest = max((len(d) for _, d in groups), default=1)
    return page(request, "reconciliation.html", report=latest, groups=groups, widest=widest)
