"""The exception queue by what it takes to recover, kept apart from technical alerts (a system
down or paused, a breaker open, a rate limit reached, a backlog)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select

from quote2cash.engine.control import system_status
from quote2cash.engine.queries import EventRow, failed_events
from quote2cash.engine.replay import is_finance_sensitive
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import events

RECOVERABILITY: Final = {
    "automatic_retry": "Automatic retry",
    "data_correction": "Data correction",
    "finance_approval": "Finance approval",
}
BACKLOG_AGE: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class Alert:
    """A technical condition, not a business record: who is affected and since when."""

    system: str
    kind: str
    message: str
    since: datetime | None = None


@dataclass
class Queue:
    groups: dict[str, list[EventRow]] = field(
        default_factory=lambda: {key: [] for key in RECOVERABILITY}
    )
    alerts: list[Alert] = field(default_factory=list)


def recoverability(row: EventRow) -> str:
    """Dead letters and transient failures recover by retry; an approval-required or
    finance-sensitive record needs a finance approver; the rest need corrected data."""
    if row.category == "approval_required" or (
        row.status == "exception" and is_finance_sensitive(row.type) and row.category is None
    ):
        return "finance_approval"
    if row.status == "dead" or row.category in (None, "transient"):
        return "automatic_retry"
    return "data_correction"


def read_queue(runtime: Runtime, *, limit: int = 200) -> Queue:
    queue = Queue()
    for row in failed_events(runtime, None, limit=limit):
        queue.groups[recoverability(row)].append(row)
    queue.alerts = read_alerts(runtime)
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
            select(func.count(), func.min(events.c.recorded_at)).where(events.c.status == "pending")
        ).one()
    if pending and oldest is not None and now - oldest > BACKLOG_AGE:
        alerts.append(Alert("hub", "backlog", f"{pending} event(s) pending; oldest since", oldest))
    return alerts
