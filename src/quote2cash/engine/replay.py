"""Replay with control (maker-checker): a request names events, a second person approves it.

Selecting: by event ids, by correlation id, or by a time range (event time). A failed event
(exception or dead letter) is put back in its place in its subject, so the subject drains in
order; a processed event is re-run as a new event (``causation_id`` = the original) after the
subject's current events. Finance-sensitive types need an approver with ``finance_approver``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, case, delete, insert, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.control import ControlError
from quote2cash.engine.events import Event, decode_data, encode_data
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import NotAllowed, Operator
from quote2cash.observability import tracing
from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    STATE_COLUMNS,
    event_state,
    events,
    parked_events,
    replay_requests,
    subjects,
)

FINANCE_SENSITIVE = re.compile(r"(invoice|credit_?memo|credit_?note|payment|refund)", re.I)
MAX_EVENTS_PER_REQUEST = 100_000


class ReplayError(ControlError):
    """A refused replay action; the message names the request and the rule."""


@dataclass(frozen=True)
class Selector:
    event_ids: tuple[str, ...] = ()
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_processed: bool = False

    def describe(self) -> str:
        parts = []
        if self.event_ids:
            parts.append(f"event ids {', '.join(self.event_ids)}")
        if self.correlation_id:
            parts.append(f"correlation id {self.correlation_id}")
        if self.since or self.until:
            parts.append(f"time {self.since or '-inf'} .. {self.until or '+inf'}")
        return "; ".join(parts) or "nothing"


@dataclass(frozen=True)
class ReplayRequest:
    id: int
    status: str
    requested_by: str
    reason: str
    finance_sensitive: bool
    event_count: int
    positions: tuple[int, ...]
    selector: str
    decided_by: str | None = None
    decision_note: str | None = None
    corrections: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    """New data for failed events (position -> data), applied when the request is approved."""


def is_finance_sensitive(event_type: str) -> bool:
    return bool(FINANCE_SENSITIVE.search(event_type))


def replayable_statuses(selector: Selector) -> list[str]:
    return ["exception", "dead"] + (["done"] if selector.include_processed else [])


def replayable(selector: Selector) -> Select[Any]:
    """The events ``selector`` names that a replay would take, in log order (one definition
    for the request and its dry-run preview)."""
    query = (
        select(events, *STATE_COLUMNS)
        .select_from(EVENTS_WITH_STATE)
        .where(event_state.c.status.in_(replayable_statuses(selector)))
    )
    if selector.event_ids:
        query = query.where(events.c.event_id.in_(selector.event_ids))
    if selector.correlation_id:
        query = query.where(events.c.correlation_id == selector.correlation_id)
    if selector.since:
        query = query.where(events.c.time >= selector.since)
    if selector.until:
        query = query.where(events.c.time < selector.until)
    return query.order_by(events.c.pos).limit(MAX_EVENTS_PER_REQUEST + 1)


def check_selector(selector: Selector) -> None:
    if not (selector.event_ids or selector.correlation_id or selector.since or selector.until):
        raise ReplayError("a replay request needs event ids, a correlation id or a time range")


def requeue_failed(conn: Connection, pos: int, subject: str) -> None:
    """Put a failed event (exception or dead letter) back in its place in its subject."""
    conn.execute(
        update(event_state).where(event_state.c.pos == pos).values(status="pending", attempts=0)
    )
    conn.execute(delete(parked_events).where(parked_events.c.event_pos == pos))
    conn.execute(
        update(subjects)
        .where(subjects.c.subject == subject)
        .values(
            pending=subjects.c.pending + 1,
            held_by=case((subjects.c.held_by == pos, None), else_=subjects.c.held_by),
            ready_at=None,
            waiting_on=None,
        )
    )


def request_replay(
    runtime: Runtime,
    selector: Selector,
    *,
    by: Operator,
    reason: str,
    corrections: Mapping[int, dict[str, Any]] | None = None,
) -> ReplayRequest:
    """Pin the selected events now, so the approver approves exactly what will run;
    ``corrections`` (position -> new data) are applied only when the request is approved."""
    by.require("operator", "request a replay")
    actor = by.name
    if not reason.strip():
        raise ReplayError("a replay request needs a reason")
    check_selector(selector)
    statuses = replayable_statuses(selector)
    query = replayable(selector)
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        rows = conn.execute(query).all()
        if not rows:
            raise ReplayError(
                f"no replayable events match {selector.describe()} (statuses {statuses}); "
                "to re-run processed events, include processed ones (--include-processed)"
            )
        if len(rows) > MAX_EVENTS_PER_REQUEST:
            raise ReplayError(f"more than {MAX_EVENTS_PER_REQUEST} events match; narrow it down")
        if selector.event_ids:
            missing = set(selector.event_ids) - {r.event_id for r in rows}
            if missing:
                raise ReplayError(
                    f"event id(s) {sorted(missing)} are not replayable (unknown or still pending);"
                    " use --include-processed for processed events"
                )
        positions = [r.pos for r in rows]
        sensitive = any(is_finance_sensitive(r.type) for r in rows)
        stored = json.dumps(
            {
                "event_ids": list(selector.event_ids),
                "correlation_id": selector.correlation_id,
                "since": selector.since.isoformat() if selector.since else None,
                "until": selector.until.isoformat() if selector.until else None,
                "include_processed": selector.include_processed,
                "positions": positions,
                "corrections": {str(pos): data for pos, data in (corrections or {}).items()},
            }
        )
        rid = conn.execute(
            insert(replay_requests)
            .values(
                selector=stored,
                reason=reason,
                requested_by=actor,
                requested_at=now,
                status="pending",
                finance_sensitive=sensitive,
                event_count=len(positions),
            )
            .returning(replay_requests.c.id)
        ).scalar_one()
        append_audit(
            conn,
            [
                AuditEntry(
                    actor,
                    "replay.requested",
                    f"replay:{rid}",
                    details={
                        "credential": _credential(by),
                        "selector": selector.describe(),
                        "events": len(positions),
                        "finance_sensitive": sensitive,
                        "reason": reason,
                    },
                )
            ],
            now,
        )
    return get_request(runtime, int(rid))


def get_request(runtime: Runtime, request_id: int) -> ReplayRequest:
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(replay_requests).where(replay_requests.c.id == request_id)
        ).first()
    if row is None:
        raise ReplayError(f"replay request {request_id} does not exist")
    return _to_request(row)


def list_requests(runtime: Runtime, status: str | None = None) -> list[ReplayRequest]:
    query = select(replay_requests).order_by(replay_requests.c.id)
    if status:
        query = query.where(replay_requests.c.status == status)
    with runtime.engine.connect() as conn:
        return [_to_request(r) for r in conn.execute(query)]


def _to_request(row: Any) -> ReplayRequest:
    sel = json.loads(row.selector)
    return ReplayRequest(
        id=row.id,
        status=row.status,
        requested_by=row.requested_by,
        reason=row.reason,
        finance_sensitive=row.finance_sensitive,
        event_count=row.event_count,
        positions=tuple(sel["positions"]),
        selector=row.selector,
        decided_by=row.decided_by,
        decision_note=row.decision_note,
        corrections={int(pos): data for pos, data in sel.get("corrections", {}).items()},
    )


def _credential(by: Operator) -> str:
    """How the decider was authenticated, for the audit entry (never a secret)."""
    return f"token {by.token_name}" if by.token_name else by.via


def _check_decider(req: ReplayRequest, by: Operator) -> None:
    """Maker-checker: a second person decides; finance-sensitive requests need a finance
    approver, the others an operator or a finance approver."""
    if req.status != "pending":
        raise ReplayError(f"replay request {req.id} is {req.status}, not pending")
    if by.name == req.requested_by:
        raise NotAllowed(
            f"replay request {req.id}: {by.name} requested it and cannot also decide it "
            "(a second person must)"
        )
    if req.finance_sensitive:
        if not by.holds("finance_approver"):
            raise NotAllowed(
                f"replay request {req.id} touches finance-sensitive events (invoice, credit "
                f"memo, payment or refund); {by.name} lacks the finance_approver role"
            )
    elif not (by.holds("operator") or by.holds("finance_approver")):
        raise NotAllowed(
            f"replay request {req.id}: {by.name} needs the operator or finance_approver role "
            "to decide replay requests"
        )


def reject_replay(runtime: Runtime, request_id: int, *, by: Operator, note: str) -> ReplayRequest:
    req = get_request(runtime, request_id)
    _check_decider(req, by)
    actor = by.name
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        _decide(conn, req, "rejected", actor, note, now)
        append_audit(
            conn,
            [
                AuditEntry(
                    actor,
                    "replay.rejected",
                    f"replay:{req.id}",
                    details={"note": note, "credential": _credential(by)},
                )
            ],
            now,
        )
    return get_request(runtime, request_id)


def approve_replay(
    runtime: Runtime, request_id: int, *, by: Operator, note: str = ""
) -> ReplayRequest:
    """Approve and execute in one transaction: failed events go back in place, processed re-run."""
    req = get_request(runtime, request_id)
    _check_decider(req, by)
    actor = by.name
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        _decide(conn, req, "executed", actor, note, now)
        rows = conn.execute(
            select(events, *STATE_COLUMNS)
            .select_from(EVENTS_WITH_STATE)
            .where(events.c.pos.in_(req.positions))
            .order_by(events.c.pos)
        ).all()
        requeued, rerun = 0, []
        for row in rows:
            trace = _replay_trace(req, row)
            if row.status in ("exception", "dead"):
                corrected = req.corrections.get(row.pos)
                if corrected is not None:
                    conn.execute(
                        update(events)
                        .where(events.c.pos == row.pos)
                        .values(data=encode_data(corrected))
                    )
                if trace is not None:
                    conn.execute(
                        update(events).where(events.c.pos == row.pos).values(traceparent=trace)
                    )
                requeue_failed(conn, row.pos, row.subject)
                requeued += 1
            elif row.status == "done":
                rerun.append(
                    Event(
                        id=f"replay-{req.id}-{row.source}-{row.event_id}"[:200],
                        source="q2c.replay",
                        type=row.type,
                        subject=row.subject,
                        time=row.time,
                        correlation_id=row.correlation_id,
                        causation_id=row.event_id,
                        schema_version=row.schema_version,
                        data=decode_data(row.data),
                        traceparent=trace or row.traceparent,
                    )
                )
        if rerun:
            runtime.log.append_in(conn, rerun)
        append_audit(
            conn,
            [
                AuditEntry(
                    actor,
                    "replay.approved",
                    f"replay:{req.id}",
                    details={
                        "credential": _credential(by),
                        "requested_by": req.requested_by,
                        "note": note,
                        "requeued": requeued,
                        "rerun": len(rerun),
                    },
                )
            ],
            now,
        )
    return get_request(runtime, request_id)


def _replay_trace(req: ReplayRequest, row: Any) -> str | None:
    """A new trace for one replayed event, its root span linked to the original's context;
    its ``traceparent`` (None when tracing is off)."""
    with tracing.intake_span(
        f"replay {row.type}",
        {
            "q2c.via": "replay",
            "q2c.replay_request": req.id,
            "q2c.correlation_id": row.correlation_id,
            "q2c.subject": row.subject,
            "q2c.event_type": row.type,
            "q2c.event_id": row.event_id,
        },
        links=[tracing.link_to(row.traceparent)],
    ) as span:
        return tracing.traceparent_of(span)


def _decide(
    conn: Connection, req: ReplayRequest, status: str, actor: str, note: str, now: datetime
) -> None:
    result = conn.execute(
        update(replay_requests)
        .where(replay_requests.c.id == req.id, replay_requests.c.status == "pending")
        .values(status=status, decided_by=actor, decided_at=now, decision_note=note)
    )
    if result.rowcount != 1:
        raise ReplayError(f"replay request {req.id} was decided by someone else meanwhile")
