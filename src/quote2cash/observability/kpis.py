"""The seed's business KPIs, computed from the hub's own store (so every process agrees):
order activation time, invoice generation lag, amendment failure rate, synchronisation backlog,
and bookings / billings / collections per legal entity and currency.

Percentiles are nearest-rank (the smallest sample with at least p % of samples at or below
it): every reported figure is a duration that was actually measured. Money stays Decimal.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from quote2cash.observability.kpi_store import Amount, Span, read_milestones
from quote2cash.observability.work_state import Backlog, OpenEvent, backlog_now, event_history

DEFAULT_WINDOW = timedelta(hours=24)
ACTIVATION_STAGES = ("billing", "erp")
INVOICE_STAGES = ("erp", "crm")
MONEY_KINDS = ("bookings", "billings", "collections")


@dataclass(frozen=True)
class Durations:
    count: int
    p50: float | None
    p95: float | None
    max: float | None  # seconds

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Durations:
        ordered = sorted(seconds)
        if not ordered:
            return cls(0, None, None, None)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 95), ordered[-1])


@dataclass(frozen=True)
class KpiPoint:
    start: datetime
    activation_p95: float | None
    invoice_lag_p95: float | None
    amendment_failure_rate: float | None
    backlog: int


@dataclass(frozen=True)
class OpsPoint:
    start: datetime
    handled: int
    failed: int
    dead_lettered: int
    backlog: dict[str, int]


@dataclass(frozen=True)
class MoneyRow:
    entity: str
    currency: str
    bookings: Decimal
    billings: Decimal
    collections: Decimal


@dataclass(frozen=True)
class KpiReport:
    since: datetime
    until: datetime
    activation: dict[tuple[str, str], Durations]  # (entity, stage billing|erp)
    invoice_lag: dict[tuple[str, str], Durations]  # (entity, stage erp|crm)
    amendments_requested: int
    amendments_failed: int
    amendment_failure_rate: float | None
    backlog: dict[str, tuple[int, float | None]]  # system -> (events, oldest age seconds)
    money: list[MoneyRow]
    series: list[KpiPoint]  # `buckets` equal slices of [since, until]
    ops: list[OpsPoint]  # same slices

    def to_json(self) -> dict[str, Any]:
        """Times ISO 8601, amounts as decimal strings, durations in seconds."""

        def durations(table: dict[tuple[str, str], Durations]) -> list[dict[str, Any]]:
            return [
                {"entity": e, "stage": s, "count": d.count, "p50": d.p50, "p95": d.p95,
                 "max": d.max}
                for (e, s), d in sorted(table.items())
            ]  # fmt: skip

        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "activation": durations(self.activation),
            "invoice_lag": durations(self.invoice_lag),
            "amendments": {
                "requested": self.amendments_requested,
                "failed": self.amendments_failed,
                "failure_rate": self.amendment_failure_rate,
            },
            "backlog": [
                {"system": s, "events": n, "oldest_age_seconds": age}
                for s, (n, age) in sorted(self.backlog.items())
            ],
            "money": [
                {
                    "entity": m.entity,
                    "currency": m.currency,
                    "bookings": str(m.bookings),
                    "billings": str(m.billings),
                    "collections": str(m.collections),
                }
                for m in self.money
            ],
            "series": [
                {
                    "start": p.start.isoformat(),
                    "activation_p95": p.activation_p95,
                    "invoice_lag_p95": p.invoice_lag_p95,
                    "amendment_failure_rate": p.amendment_failure_rate,
                    "backlog": p.backlog,
                }
                for p in self.series
            ],
            "ops": [
                {
                    "start": p.start.isoformat(),
                    "handled": p.handled,
                    "failed": p.failed,
                    "dead_lettered": p.dead_lettered,
                    "backlog": dict(sorted(p.backlog.items())),
                }
                for p in self.ops
            ],
        }


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def failure_rate(requested: int, failed: int) -> float | None:
    return failed / requested if requested else None


def compute_kpis(
    engine: Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    buckets: int = 24,
) -> KpiReport:
    """The KPIs of milestones that started in ``[since, until)`` (default: the last 24 h), the
    backlog now (its age measured at ``until``), and ``buckets`` equal slices of the window."""
    until = until or datetime.now(UTC)
    since = since or until - DEFAULT_WINDOW
    if since >= until:
        raise ValueError(f"since {since.isoformat()} is not before until {until.isoformat()}")
    buckets = max(1, buckets)
    with engine.connect() as conn:
        found = read_milestones(conn, since, until)
        waiting = backlog_now(conn)
        history, failed = event_history(conn, since, until)
    requested = len(found.amendments)
    failed_amendments = sum(a.failed for a in found.amendments)
    edges = _edges(since, until, buckets)
    return KpiReport(
        since=since,
        until=until,
        activation=_durations(found.activation),
        invoice_lag=_durations(found.invoice_lag),
        amendments_requested=requested,
        amendments_failed=failed_amendments,
        amendment_failure_rate=failure_rate(requested, failed_amendments),
        backlog=_backlog(waiting, until),
        money=money_rows(found.amounts),
        series=_series(edges, found.activation, found.invoice_lag, found.amendments, history),
        ops=_ops(edges, history, failed),
    )


def _edges(since: datetime, until: datetime, buckets: int) -> list[datetime]:
    step = (until - since) / buckets
    return [since + step * i for i in range(buckets)] + [until]


def _durations(spans: Iterable[Span]) -> dict[tuple[str, str], Durations]:
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in spans:
        grouped[(s.entity, s.stage)].append(s.seconds)
    return {key: Durations.of(values) for key, values in sorted(grouped.items())}


def _backlog(waiting: list[Backlog], now: datetime) -> dict[str, tuple[int, float | None]]:
    return {
        b.system: (
            b.events,
            max(0.0, (now - b.oldest).total_seconds()) if b.oldest is not None else None,
        )
        for b in waiting
    }


def money_rows(amounts: Iterable[Amount]) -> list[MoneyRow]:
    """Totals per (entity, currency), Decimal-exact."""
    totals: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(
        lambda: dict.fromkeys(MONEY_KINDS, Decimal(0))
    )
    for a in amounts:
        totals[(a.entity, a.currency)][a.kind] += a.amount
    return [
        MoneyRow(e, c, t["bookings"], t["billings"], t["collections"])
        for (e, c), t in sorted(totals.items())
    ]


def _slot(edges: list[datetime], at: datetime) -> int | None:
    if at < edges[0] or at >= edges[-1]:
        return None
    low, high = 0, len(edges) - 2
    while low < high:
        mid = (low + high + 1) // 2
        if edges[mid] <= at:
            low = mid
        else:
            high = mid - 1
    return low


def _p95(values: list[float]) -> float | None:
    return percentile(sorted(values), 95) if values else None


def _series(
    edges: list[datetime],
    activation: list[Span],
    lag: list[Span],
    amendments: Iterable[Any],
    history: list[OpenEvent],
) -> list[KpiPoint]:
    """Per slice: activation p95 (Closed Won -> booked in the ERP), invoice lag p95 (finalised
    -> visible in the CRM), amendment failure rate, and events waiting at the slice's end."""
    n = len(edges) - 1
    act: list[list[float]] = [[] for _ in range(n)]
    inv: list[list[float]] = [[] for _ in range(n)]
    req, bad = [0] * n, [0] * n
    for s in activation:
        i = _slot(edges, s.at)
        if i is not None and s.stage == "erp":
            act[i].append(s.seconds)
    for s in lag:
        i = _slot(edges, s.at)
        if i is not None and s.stage == "crm":
            inv[i].append(s.seconds)
    for a in amendments:
        i = _slot(edges, a.at)
        if i is not None:
            req[i] += 1
            bad[i] += a.failed
    return [
        KpiPoint(
            edges[i],
            _p95(act[i]),
            _p95(inv[i]),
            failure_rate(req[i], bad[i]),
            sum(_waiting(e, edges[i + 1]) for e in history),
        )
        for i in range(n)
    ]


def _waiting(event: OpenEvent, at: datetime) -> bool:
    return event.recorded_at <= at and (event.processed_at is None or event.processed_at > at)


def _ops(
    edges: list[datetime], history: list[OpenEvent], failed: list[tuple[datetime, str]]
) -> list[OpsPoint]:
    """Per slice: events done, failed attempts, dead letters, and the backlog per system at
    the slice's end."""
    n = len(edges) - 1
    handled, fails, dead = [0] * n, [0] * n, [0] * n
    for e in history:
        i = _slot(edges, e.processed_at) if e.processed_at is not None else None
        if i is not None:
            handled[i] += 1
    for at, kind in failed:
        i = _slot(edges, at)
        if i is not None:
            if kind == "dead":
                dead[i] += 1
            else:
                fails[i] += 1
    points = []
    for i in range(n):
        backlog: dict[str, int] = defaultdict(int)
        for e in history:
            if _waiting(e, edges[i + 1]):
                backlog[e.system] += 1
        points.append(OpsPoint(edges[i], handled[i], fails[i], dead[i], dict(backlog)))
    return points
