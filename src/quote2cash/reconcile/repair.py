"""Repairs go through the engine: each proposal names a logged event, and applying one files a
replay request that a second person approves (finance-sensitive types need a finance approver)."""

from __future__ import annotations

from dataclasses import replace

from quote2cash.engine.control import ControlError
from quote2cash.engine.queries import latest_event_about
from quote2cash.engine.replay import ReplayRequest, Selector, is_finance_sensitive, request_replay
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.reconcile.model import Drift


class RepairError(ControlError):
    """A drift that cannot be repaired by replay; the message says what a person must do."""


def with_events(runtime: Runtime, drifts: list[Drift]) -> list[Drift]:
    """Each proposal with the logged event to replay filled in (the newest about its object)."""
    out = []
    for drift in drifts:
        repair = drift.repair
        if repair.event_type is not None:
            found = (
                latest_event_about(runtime, repair.event_type, repair.about)
                if repair.about
                else None
            )
            repair = replace(
                repair,
                event_id=found.id if found else None,
                event_status=found.status if found else None,
                finance_sensitive=is_finance_sensitive(repair.event_type),
            )
        out.append(replace(drift, repair=repair))
    return out


def file_repair(runtime: Runtime, drift: Drift, *, by: Operator) -> ReplayRequest:
    """The replay request for ``drift``; another operator approves it before anything runs."""
    if not drift.repair.replayable or drift.repair.event_id is None:
        raise RepairError(
            f"drift {drift.id} ({drift.kind}, {drift.object} {drift.key}) is not repaired by a "
            f"replay: {drift.repair.describe()}"
        )
    return request_replay(
        runtime,
        Selector(event_ids=(drift.repair.event_id,), include_processed=True),
        by=by,
        reason=f"reconciliation drift {drift.id}: {drift.detail}; {drift.repair.action}",
    )
