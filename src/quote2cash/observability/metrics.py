"""Per-process Prometheus instruments: system calls, rate limits, breakers, events handled.

Labels are bounded by construction: ``operation`` is a step name cut to ``system.operation``
(a per-record suffix such as a billing item id is dropped) and every label value that does not
look like a known name becomes ``other``, so no id reaches a label. With metrics off
(``Q2C_METRICS_ENABLED=false`` or ``configure(False)``) every hook returns at its first line.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY: Final = CollectorRegistry(auto_describe=True)
"""The per-process instruments the hub's ``/metrics`` serves (not prometheus_client's global)."""

CALL_OUTCOMES: Final = ("ok", "transient", "permanent", "unavailable")
HANDLED_OUTCOMES: Final = ("done", "retried", "exception", "dead_lettered", "parked", "held")
BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}
OTHER: Final = "other"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,40}(\.[a-z][a-z0-9_]{0,40}){1,3}$")
_CALL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

system_calls = Counter(
    "q2c_system_calls",
    "Calls to target systems, by outcome (error class).",
    ("system", "operation", "outcome"),
    registry=REGISTRY,
)
system_call_seconds = Histogram(
    "q2c_system_call_seconds",
    "Latency of calls to target systems (the call itself, after any rate-limit wait).",
    ("system", "operation"),
    buckets=_CALL_BUCKETS,
    registry=REGISTRY,
)
rate_limit_wait = Counter(
    "q2c_rate_limit_wait_seconds",
    "Time calls waited for a rate-limit token.",
    ("system",),
    registry=REGISTRY,
)
rate_limit_tokens = Counter(
    "q2c_rate_limit_tokens_used",
    "Rate-limit tokens taken by calls.",
    ("system",),
    registry=REGISTRY,
)
breaker_state = Gauge(
    "q2c_breaker_state",
    "Circuit breaker of a target system: 0 closed, 1 half-open, 2 open.",
    ("system",),
    registry=REGISTRY,
)
events_handled = Counter(
    "q2c_events_handled",
    "Events run by this process's workers, by outcome.",
    ("event_type", "outcome"),
    registry=REGISTRY,
)
event_handle_seconds = Histogram(
    "q2c_event_handle_seconds",
    "Time to run one event's handler (all its steps).",
    ("event_type",),
    buckets=_CALL_BUCKETS,
    registry=REGISTRY,
)

_enabled: bool | None = None
_children: dict[tuple[int, tuple[str, ...]], Any] = {}
"""Labelled children by (metric, label values): ``labels()`` validates and locks on every call,
a dict lookup does not. Bounded, as the label values are."""


def _child(metric: Counter | Gauge | Histogram, *labels: str) -> Any:
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def configure(enabled: bool) -> None:
    """Turn the per-process instruments on or off (the overhead benchmark compares both)."""
    global _enabled
    _enabled = enabled


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


@lru_cache(maxsize=1024)
def event_type_label(event_type: str) -> str:
    return event_type if _EVENT_TYPE.match(event_type) else OTHER


def now() -> float:
    """A start time for ``call_finished`` / ``event_handled`` (0 when metrics are off)."""
    return time.perf_counter() if enabled() else 0.0


def call_finished(system: str, operation: str, outcome: str, started: float) -> None:
    if not enabled():
        return
    sys_label, op = name_label(system), operation_of(operation) if operation else "unknown"
    _child(system_calls, sys_label, op, outcome).inc()
    if outcome in ("ok", "transient", "permanent"):
        _child(system_call_seconds, sys_label, op).observe(time.perf_counter() - started)


def rate_limited(system: str, waited: float) -> None:
    if not enabled():
        return
    label = name_label(system)
    _child(rate_limit_tokens, label).inc()
    if waited > 0:
        _child(rate_limit_wait, label).inc(waited)


def breaker_changed(system: str, state: str) -> None:
    if not enabled():
        return
    _child(breaker_state, name_label(system)).set(BREAKER_STATES.get(state, 0))


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
    if not enabled():
        return
    if completed:
        outcome = "parked" if parked else "done"
    elif held:
        outcome = "held"
    else:
        outcome = {"pending": "retried", "dead": "dead_lettered"}.get(
            failure_status or "", "exception"
        )
    label = event_type_label(event_type)
    _child(events_handled, label, outcome).inc()
    _child(event_handle_seconds, label).observe(time.perf_counter() - started)


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
    _child(_bus_lag, "events").set(pending)
    _child(_bus_lag, "oldest_seconds").set(oldest_age_seconds)
