"""The exception queue by what it takes to recover, kept apart from technical alerts (a system
down or paused, a breaker open, a rate limit reached, a backlog)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select

from quote2cash.engine.control import system_status
from quote2cash.engine.exceptions import ExceptionItem, list_exceptions
from quote2cash.engine.quarantine import QuarantinedDelivery, list_quarantine
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import EVENTS_WITH_STATE, event_state, events

RECOVERABILITY: Final = {
    "automatic_retry": "Automatic retry",
    "data_correction": "Data correction",
    "finance_approval": "Finance approval",
}
TECHNICAL: Final = "technical"
BACKLOG_AGE: Final = timedelta(minutes=5)
SHOWN: Final = 500
QUARANTINE_SHOWN: Final = 100


@dataclass(frozen=True)
class Alert:
    """A technical condition, not a business record: who is affected and since when."""

    system: str
    kind: str
    message: str
    since: datetime | None = None


@dataclass
class Queue:
    groups: dict[str, list[ExceptionItem]] = field(
        default_factory=lambda: {key: [] for key in RECOVERABILITY}
    )
    technical: list[ExceptionItem] = field(default_factory=list)
    """Dead letters and credential failures: events, but fixed by whoever runs the systems."""
    alerts: list[Alert] = field(default_factory=list)
    quarantine: list[QuarantinedDelivery] = field(default_factory=list)
    """Signed deliveries the hub could not understand, kept whole for a person."""


def read_queue(runtime: Runtime, *, limit: int = SHOWN) -> Queue:
    queue = Queue()
    for item in list_exceptions(runtime, limit=limit):
        if item.recoverability == TECHNICAL:
            queue.technical.append(item)
        else:
            queue.groups.setdefault(item.recoverability, []).append(item)
    queue.alerts = read_alerts(runtime)
    queue.quarantine = list_quarantine(runtime, status="held", limit=QUARANTINE_SHOWN)
    return queue


def read_alerts(runtime: Runtime) -> list[Alert]:
    now = runtime.clock.now()
    alerts: list[Alert] = []
    for entry in system_status(runtime):
        name = str(entry["system"])
        if entry.get("paused"):
            alerts.append(
                Alert(name, "paused", f"paused by {entry['changed_by']}: {entry['reason']}")
            )
        windows: Any = entry.get("windows") or []
        for window in windows:
            if window["in_force"]:
                alerts.append(
                    Alert(
                        name,
                        "maintenance",
                        f"maintenance window: {window['reason']}",
                        window["starts_at"],
                    )
                )
        if entry.get("held_subjects"):
            alerts.append(
                Alert(name, "system down", f"{entry['held_subjects']} deal(s) waiting for it")
            )
    gates = runtime.gates
    for name, state in gates.status().items():
        if "breaker open" in state or "breaker half" in state:
            alerts.append(Alert(name, "breaker open", state))
    for name, bucket in getattr(gates, "_buckets", {}).items():
        if bucket.tokens < 0:
            alerts.append(
                Alert(name, "rate limit", f"rate limit reached ({gates.limits_for(name).rate}/s)")
            )
    with runtime.engine.connect() as conn:
        pending, oldest = conn.execute(
            select(func.count(), func.min(events.c.recorded_at))
            .select_from(EVENTS_WITH_STATE)
            .where(event_state.c.status == "pending")
        ).one()
    if pending and oldest is not None and now - oldest > BACKLOG_AGE:
        alerts.append(Alert("hub", "backlog", f"{pending} event(s) pending; oldest since", oldest))
    return alerts
