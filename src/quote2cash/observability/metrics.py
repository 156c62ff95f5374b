"""Per-process Prometheus instruments: system calls, rate limits, breakers, events handled.

Labels are bounded by construction: ``operation`` is a step name cut to ``system.operation``
(a per-record suffix such as a billing item id is dropped) and every label value that does not
look like a known name becomes ``other``, so no id reaches a label. With metrics off
(``Q2C_METRICS_ENABLED=false`` or ``configure(False)``) every hook returns at its first line.
"""

from __future__ import annotations

import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Final

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

REGISTRY: Final = CollectorRegistry(auto_describe=True)
"""The per-process instruments the hub's ``/metrics`` serves (not prometheus_client's global)."""

CALL_OUTCOMES: Final = ("ok", "transient", "permanent", "unavailable")
TIMED_OUTCOMES: Final = frozenset(("ok", "transient", "permanent"))
"""Outcomes of calls that were made, so have a latency (``unavailable`` never started)."""
HANDLED_OUTCOMES: Final = ("done", "retried", "exception", "dead_lettered", "parked", "held")
BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}
OTHER: Final = "other"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,40}(\.[a-z][a-z0-9_]{0,40}){1,3}$")
_CALL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_go_float: Callable[[float], str] = floatToGoString  # an ``le`` as prometheus_client writes it
_COUNT, _SUM, _FIRST_BUCKET = 0, 1, 2
"""A row of a thread's table: [count, sum of seconds, one count per bucket, then +Inf]."""


class ThreadTables:
    """Running sums kept per thread: the only writer of a thread's table is that thread, so the
    hot path takes no lock (prometheus_client's instruments take one per increment, about 1 us
    of a step's metrics); a scrape adds the tables up. An ended thread's sums are kept, folded
    into one table, so threads that come and go do not pile tables up."""

    def __init__(self) -> None:
        self.local = threading.local()
        """Its ``table`` attribute is this thread's table, once it has one."""
        self._tables: list[tuple[threading.Thread, dict[tuple[str, ...], list[float]]]] = []
        self._ended: dict[tuple[str, ...], list[float]] = {}
        self._created: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def table(self) -> dict[tuple[str, ...], list[float]]:
        """This thread's table: label values -> row."""
        try:
            return self.local.table  # type: ignore[no-any-return]
        except AttributeError:
            table: dict[tuple[str, ...], list[float]] = {}
            with self._lock:
                self._tables.append((threading.current_thread(), table))
            self.local.table = table
            return table

    def new_row(self, key: tuple[str, ...], width: int) -> list[float]:
        """A zero row for ``key`` in this thread's table (the first one anywhere dates it)."""
        row = [0.0] * width
        self.table()[key] = row
        if key not in self._created:
            with self._lock:
                self._created.setdefault(key, time.time())
        return row

    def totals(self) -> Iterator[tuple[tuple[str, ...], list[float], float]]:
        """(label values, summed row, created) for every key any thread has seen."""
        with self._lock:
            live = []
            for thread, table in self._tables:
                if thread.is_alive():
                    live.append((thread, table))
                else:  # it writes no more: its sums join the ended threads'
                    _add_rows(self._ended, table)
            self._tables = live
            summed = {key: list(row) for key, row in self._ended.items()}
            created = dict(self._created)
        for _, table in live:
            _add_rows(summed, table.copy())  # one C call: safe while its thread adds
        for key in sorted(summed):
            yield key, summed[key], created.get(key, 0.0)


def _add_rows(
    into: dict[tuple[str, ...], list[float]], table: dict[tuple[str, ...], list[float]]
) -> None:
    for key, row in table.items():
        row = list(row)
        have = into.get(key)
        if have is None:
            into[key] = row
        else:
            for i, value in enumerate(row):
                have[i] += value


class _Timed(Collector):
    """A counter by (labels..., outcome) and a latency histogram by the same labels without the
    outcome (only outcomes in ``timed`` observed), from one row per key: one table lookup and a
    few list additions per observation."""

    def __init__(
        self,
        counter: tuple[str, str],
        histogram: tuple[str, str],
        labels: Sequence[str],
        timed: frozenset[str] | None,
        buckets: Sequence[float] = _CALL_BUCKETS,
    ) -> None:
        self.counter, self.histogram = counter, histogram
        self.labels = tuple(labels)
        self.timed = timed
        self.buckets = tuple(buckets)
        self.width = _FIRST_BUCKET + len(self.buckets) + 1
        self.tables = ThreadTables()
        self._local = self.tables.local

    def add(self, key: tuple[str, ...], seconds: float | None) -> None:
        """Count ``key`` (its last value the outcome); observe ``seconds`` unless None. The
        engine calls this per step: one frame, this thread's row found in one lookup."""
        try:
            row = self._local.table[key]
        except (AttributeError, KeyError):
            row = self.tables.new_row(key, self.width)
        row[0] += 1  # _COUNT
        if seconds is not None:
            row[1] += seconds  # _SUM
            row[2 + bisect_left(self.buckets, seconds)] += 1  # _FIRST_BUCKET + bucket

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(*self.counter, labels=(*self.labels, "outcome"))
        histogram = HistogramMetricFamily(*self.histogram, labels=self.labels)
        observed: dict[tuple[str, ...], tuple[list[float], float]] = {}
        for key, row, created in self.tables.totals():
            counter.add_metric(key, row[_COUNT], created=created)
            if self.timed is not None and key[-1] not in self.timed:
                continue
            labels = key[:-1]
            have = observed.get(labels)
            if have is None:
                observed[labels] = (row, created)
            else:
                have[0][_SUM:] = [a + b for a, b in zip(have[0][_SUM:], row[_SUM:], strict=True)]
                observed[labels] = (have[0], min(have[1], created))
        yield counter
        name = histogram.name
        bounds = [_go_float(bound) for bound in (*self.buckets, float("inf"))]
        for labels, (row, created) in sorted(observed.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(bounds, row[_FIRST_BUCKET:], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric(labels, buckets, row[_SUM])
            named = dict(zip(self.labels, labels, strict=True))
            histogram.samples.append(Sample(f"{name}_created", named, created))
        yield histogram

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*self.counter, labels=(*self.labels, "outcome"))
        yield HistogramMetricFamily(*self.histogram, labels=self.labels)


class _Counts(Collector):
    """Counters by one label (rate-limit tokens and waiting time per system), lock-free."""

    def __init__(self, families: Sequence[tuple[str, str]], label: str) -> None:
        self.families = tuple(families)
        self.label = label
        self.tables = ThreadTables()

    def add(self, key: str, *amounts: float) -> None:
        row = self.tables.table().get((key,))
        if row is None:
            row = self.tables.new_row((key,), len(self.families))
        for i, amount in enumerate(amounts):
            row[i] += amount

    def collect(self) -> Iterator[Metric]:
        out = [CounterMetricFamily(*family, labels=(self.label,)) for family in self.families]
        for key, row, created in self.tables.totals():
            for family, value in zip(out, row, strict=True):
                family.add_metric(key, value, created=created)
        yield from out

    def describe(self) -> Iterator[Metric]:
        for family in self.families:
            yield CounterMetricFamily(*family, labels=(self.label,))


system_calls = _Timed(
    ("q2c_system_calls", "Calls to target systems, by outcome (error class)."),
    (
        "q2c_system_call_seconds",
        "Latency of calls to target systems (the call itself, after any rate-limit wait).",
    ),
    ("system", "operation"),
    TIMED_OUTCOMES,
)
rate_limits = _Counts(
    (
        ("q2c_rate_limit_tokens_used", "Rate-limit tokens taken by calls."),
        ("q2c_rate_limit_wait_seconds", "Time calls waited for a rate-limit token."),
    ),
    "system",
)
breaker_state = Gauge(
    "q2c_breaker_state",
    "Circuit breaker of a target system: 0 closed, 1 half-open, 2 open.",
    ("system",),
    registry=REGISTRY,
)
events_handled = _Timed(
    ("q2c_events_handled", "Events run by this process's workers, by outcome."),
    ("q2c_event_handle_seconds", "Time to run one event's handler (all its steps)."),
    ("event_type",),
    None,
)
for _collector in (system_calls, rate_limits, events_handled):
    REGISTRY.register(_collector)

_enabled: bool | None = None
_breakers: dict[str, int] = {}
"""The breaker state last set per system label: the gauge is set on a change only."""
_breaker_lock = threading.Lock()


def configure(enabled: bool) -> None:
    """Turn the per-process instruments on or off (the overhead benchmark compares both)."""
    global _enabled, now
    _enabled = enabled
    now = time.perf_counter if enabled else float


def _first_now() -> float:
    configure(enabled())
    return now()


now: Callable[[], float] = _first_now
"""A start time for ``call_finished`` / ``event_handled`` (0 when metrics are off): the clock
itself, or ``float``, once the setting is read, so a step pays no Python frame for it."""


def enabled() -> bool:
    global _enabled
    if _enabled is None:
        from quote2cash.settings import get_settings

        _enabled = get_settings().metrics_enabled
    return _enabled


@lru_cache(maxsize=1024)
def name_label(value: str | None) -> str:
    """A system or category name as a label; anything unexpected is ``other``."""
    if value is None:
        return "none"
    return value if _NAME.match(value) else OTHER


@lru_cache(maxsize=4096)
def operation_of(step: str) -> str:
    """``billing.change_quantity.si_123`` -> ``change_quantity``: the step's operation only."""
    parts = step.split(".")
    op = parts[1] if len(parts) > 1 else parts[0]
    return op if _NAME.match(op) else OTHER


@lru_cache(maxsize=4096)
def call_labels(system: str, operation: str, outcome: str) -> tuple[str, str, str]:
    """A call's label values; bounded by the labels, so a cache of them is too."""
    return name_label(system), operation_of(operation) if operation else "unknown", outcome


@lru_cache(maxsize=1024)
def event_type_label(event_type: str) -> str:
    return event_type if _EVENT_TYPE.match(event_type) else OTHER


@lru_cache(maxsize=4096)
def _handled_key(event_type: str, outcome: str) -> tuple[str, str]:
    return event_type_label(event_type), outcome


def call_finished(system: str, operation: str, outcome: str, started: float) -> None:
    """One call to ``system`` ended with ``outcome`` (its latency counted when it was made)."""
    if not (_enabled or (_enabled is None and enabled())):
        return
    if outcome in TIMED_OUTCOMES:
        system_calls.add(call_labels(system, operation, outcome), time.perf_counter() - started)
    else:
        system_calls.add(call_labels(system, operation, outcome), None)


def call_succeeded(labels: tuple[str, str, str], started: float) -> None:
    """``call_finished`` of a call that succeeded, its ``call_labels`` worked out beforehand
    (the gate keeps them per step name): the engine's per-step path."""
    if not (_enabled or (_enabled is None and enabled())):
        return
    system_calls.add(labels, time.perf_counter() - started)


def rate_limited(system: str, waited: float) -> None:
    if not (_enabled or (_enabled is None and enabled())):
        return
    rate_limits.add(name_label(system), 1, max(waited, 0.0))


def breaker_changed(system: str, state: str) -> None:
    """The breaker's state after a call; the gauge is written only when it changes."""
    if not (_enabled or (_enabled is None and enabled())):
        return
    label, value = name_label(system), BREAKER_STATES.get(state, 0)
    if _breakers.get(label) == value:
        return
    with _breaker_lock:  # the gauge and the memo change together
        breaker_state.labels(label).set(value)
        _breakers[label] = value


def event_handled(
    event_type: str,
    *,
    completed: bool,
    parked: bool,
    held: bool,
    failure_status: str | None,
    started: float,
) -> None:
    """One event's outcome as the worker saw it (``failure_status`` is the failure row's)."""
    if not (_enabled or (_enabled is None and enabled())):
        return
    if completed:
        outcome = "parked" if parked else "done"
    elif held:
        outcome = "held"
    else:
        outcome = {"pending": "retried", "dead": "dead_lettered"}.get(
            failure_status or "", "exception"
        )
    events_handled.add(_handled_key(event_type, outcome), time.perf_counter() - started)


_bus_lag = Gauge(
    "q2c_bus_outbox_lag",
    "Business events in the outbox not yet on the stream (events), and the age of the oldest "
    "(seconds), as this process's bus publisher last saw them.",
    ("measure",),
    registry=REGISTRY,
)


def bus_lag(pending: int, oldest_age_seconds: float) -> None:
    """The bus publisher's lag behind the outbox (0 and 0 when it has caught up)."""
    if not enabled():
        return
    _bus_lag.labels("events").set(pending)
    _bus_lag.labels("oldest_seconds").set(oldest_age_seconds)
