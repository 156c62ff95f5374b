"""The store-derived metrics (KPIs, backlog, dead letters, pauses) as a Prometheus collector.

Read from the store at scrape time, so every hub process reports the same figures; kept for
``cache_seconds`` so a scrape storm reads the store once. Labels are bounded: systems, legal
entities, currencies, stages, event classes and categories, never an id.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine

from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.replay import is_finance_sensitive
from quote2cash.observability.kpi_store import (
    AmendmentRequest,
    Found,
    Milestones,
    Span,
    combine,
    events_at,
    last_position,
    measure,
    milestone_events_after,
)
from quote2cash.observability.kpis import money_rows
from quote2cash.observability.metrics import name_label
from quote2cash.observability.work_state import (
    Backlog,
    backlog_now,
    held_events,
    system_states,
)

DURATION_BUCKETS: Final = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 14400, 86400)
CORE_SYSTEMS: Final = ("crm", "billing", "erp")
RATIO_WINDOWS: Final = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
REREAD_POSITIONS: Final = 1000
"""New events are read from this many positions back: a PostgreSQL transaction may commit a
lower position after a higher one was seen."""
RESYNC_SECONDS: Final = 3600.0


def event_class(event_type: str) -> str:
    """``finance`` for invoice, credit memo, payment and refund types (replay's rule)."""
    return "finance" if is_finance_sensitive(event_type) else "operational"


class KpiCollector(Collector):
    """Collects from ``engine``'s store; ``systems`` are always reported (0 when idle); ages
    and windows are measured at ``clock``'s now.

    The all-time KPI histograms are kept incrementally: a read measures only events logged
    since the last one and those whose milestones were not all reached yet; everything is read
    afresh every ``resync_seconds``."""

    def __init__(
        self,
        engine: Engine,
        *,
        cache_seconds: float = 10.0,
        systems: Iterable[str] = CORE_SYSTEMS,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.cache_seconds = cache_seconds
        self.systems = tuple(systems)
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._read_at = float("-inf")
        self.resync_seconds = RESYNC_SECONDS
        self._found: dict[int, Found] = {}
        self._open: set[int] = set()
        self._last = 0
        self._synced_at = float("-inf")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_seconds or not self._cached:
                self._cached = self._read()
                self._read_at = time.monotonic()
            yield from self._cached

    def _read(self) -> list[Metric]:
        now = self.clock.now()
        with self.engine.connect() as conn:
            found = self._milestones(conn)
            waiting = backlog_now(conn)
            held = held_events(conn)
            states = system_states(conn, now)
        out: list[Metric] = []
        out += self._backlog(waiting, now)
        out += self._systems(states)
        out += _held(held)
        out.append(
            _histogram(
                "q2c_order_activation_seconds",
                "Closed Won -> active in billing (stage billing) -> booked in the ERP (erp).",
                found.activation,
            )
        )
        out.append(
            _histogram(
                "q2c_invoice_generation_lag_seconds",
                "Billing invoice finalised -> posted in the ERP (stage erp) -> visible in the "
                "CRM (crm).",
                found.invoice_lag,
            )
        )
        out += _amendments(found.amendments, now)
        out += _money(found)
        return out

    def _milestones(self, conn: Connection) -> Milestones:
        if time.monotonic() - self._synced_at >= self.resync_seconds:
            self._found, self._open, self._last = {}, set(), 0
            self._synced_at = time.monotonic()
        upto = last_position(conn)
        rows = milestone_events_after(conn, max(0, self._last - REREAD_POSITIONS), upto)
        rows += events_at(conn, self._open - {r[0] for r in rows})
        fresh = measure(conn, rows)
        self._found.update(fresh)
        self._open = {pos for pos, f in fresh.items() if not f.settled}
        self._last = upto
        return combine(self._found.values())

    def _backlog(self, waiting: Iterable[Backlog], now: datetime) -> list[Metric]:
        events = GaugeMetricFamily(
            "q2c_backlog_events",
            "Events waiting, by the target system they wait on ('none': no system named).",
            labels=["system"],
        )
        age = GaugeMetricFamily(
            "q2c_backlog_oldest_age_seconds",
            "Age of the oldest waiting event, by target system.",
            labels=["system"],
        )
        seen: dict[str, tuple[int, float]] = {s: (0, 0.0) for s in self.systems}
        for b in waiting:
            system = name_label(b.system)
            seconds = max(0.0, (now - b.oldest).total_seconds()) if b.oldest else 0.0
            n, prev = seen.get(system, (0, 0.0))
            seen[system] = (n + b.events, max(prev, seconds))
        for system, (n, seconds) in sorted(seen.items()):
            events.add_metric([system], n)
            age.add_metric([system], seconds)
        return [events, age]

    def _systems(self, states: dict[str, tuple[bool, bool]]) -> list[Metric]:
        paused = GaugeMetricFamily(
            "q2c_system_paused", "1 while a target system is paused by hand.", labels=["system"]
        )
        window = GaugeMetricFamily(
            "q2c_system_in_maintenance",
            "1 while a target system is in a maintenance window.",
            labels=["system"],
        )
        merged: dict[str, tuple[bool, bool]] = dict.fromkeys(self.systems, (False, False))
        for name, state in states.items():
            label = name_label(name)
            was = merged.get(label, (False, False))
            merged[label] = (was[0] or state[0], was[1] or state[1])
        for name, (p, w) in sorted(merged.items()):
            paused.add_metric([name], int(p))
            window.add_metric([name], int(w))
        return [paused, window]


def _held(held: list[tuple[str, str, str | None]]) -> list[Metric]:
    dead = GaugeMetricFamily(
        "q2c_events_dead_lettered",
        "Events dead-lettered now (not yet replayed or resolved), by class.",
        labels=["event_class"],
    )
    open_ = GaugeMetricFamily(
        "q2c_exceptions_open",
        "Events in the exception queue now, by class and category.",
        labels=["event_class", "category"],
    )
    dead_count: dict[str, int] = {"finance": 0, "operational": 0}
    open_count: dict[tuple[str, str], int] = defaultdict(int)
    for type_, status, category in held:
        cls = event_class(type_)
        if status == "dead":
            dead_count[cls] += 1
        elif status == "exception":
            open_count[(cls, name_label(category))] += 1
    for cls, n in sorted(dead_count.items()):
        dead.add_metric([cls], n)
    for (cls, category), n in sorted(open_count.items()):
        open_.add_metric([cls, category], n)
    return [dead, open_]


def _histogram(name: str, doc: str, spans: list[Span]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["entity", "stage"])
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in spans:
        grouped[(s.entity, s.stage)].append(s.seconds)
    for key, values in sorted(grouped.items()):
        buckets: list[tuple[str, float]] = [
            (str(float(le)), float(sum(v <= le for v in values))) for le in DURATION_BUCKETS
        ]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric(list(key), buckets, sum(values))
    return family


def _amendments(requests: list[AmendmentRequest], now: datetime) -> list[Metric]:
    requested = CounterMetricFamily(
        "q2c_amendments_requested", "Amendment requests heard from the CRM.", labels=["entity"]
    )
    failed = CounterMetricFamily(
        "q2c_amendments_failed",
        "Amendment requests that failed (exception or dead letter).",
        labels=["entity"],
    )
    ratio = GaugeMetricFamily(
        "q2c_amendment_failure_ratio",
        "Failed / requested amendments over the window (NaN when none was requested).",
        labels=["window"],
    )
    asked: dict[str, int] = defaultdict(int)
    bad: dict[str, int] = defaultdict(int)
    for r in requests:
        asked[r.entity] += 1
        bad[r.entity] += r.failed
    for entity in sorted(asked):
        requested.add_metric([entity], asked[entity])
        failed.add_metric([entity], bad[entity])
    for window, span in RATIO_WINDOWS.items():
        recent = [r for r in requests if r.at >= now - span]
        n = len(recent)
        ratio.add_metric([window], sum(r.failed for r in recent) / n if n else float("nan"))
    return [requested, failed, ratio]


def _money(found: Milestones) -> list[Metric]:
    families = {
        kind: GaugeMetricFamily(
            f"q2c_{kind}_amount",
            f"Total {kind} per legal entity and currency (currency units).",
            labels=["entity", "currency"],
        )
        for kind in ("bookings", "billings", "collections")
    }
    for row in money_rows(found.amounts):
        families["bookings"].add_metric([row.entity, row.currency], float(row.bookings))
        families["billings"].add_metric([row.entity, row.currency], float(row.billings))
        families["collections"].add_metric([row.entity, row.currency], float(row.collections))
    return list(families.values())


def kpi_registry(
    engine: Engine, *, cache_seconds: float = 10.0, clock: Clock | None = None
) -> CollectorRegistry:
    """A registry of one store's derived metrics (one per served app)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(engine, cache_seconds=cache_seconds, clock=clock))
    return registry
