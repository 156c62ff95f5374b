"""The exception queue as people work it: by what fixes an item, and the actions that fix it.

Recoverability says who or what recovers an event: ``automatic_retry`` (transient, the engine
retries it), ``data_correction`` (data, mapping, conflict: a person corrects and retries),
``finance_approval`` (approval required, or a finance-sensitive event: a second person with
``finance_approver`` decides), ``technical`` (auth, retries exhausted: an alert for whoever
runs the systems). Every action is an authenticated operator's, audited; a finance-sensitive
event is never retried or corrected directly, only through a replay request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, case, delete, or_, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.control import ControlError
from quote2cash.engine.events import decode_data, encode_data
from quote2cash.engine.replay import (
    ReplayRequest,
    Selector,
    check_selector,
    is_finance_sensitive,
    replayable,
    request_replay,
    requeue_failed,
)
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.store.schema import (
    EVENTS_WITH_STATE,
    STATE_COLUMNS,
    event_state,
    events,
    parked_events,
    subjects,
)

RECOVERABILITIES: Final = ("automatic_retry", "data_correction", "finance_approval", "technical")
TECHNICAL_CATEGORIES: Final = frozenset({"auth"})
CORRECTABLE_CATEGORIES: Final = frozenset({"data", "mapping", "conflict", "ownership"})
MAX_LIMIT: Final = 1000


class ExceptionActionError(ControlError):
    """An action the queue refuses (unknown position, not failed); the message says why."""


class UnknownEvent(ExceptionActionError):
    """No event at the position given."""


class NeedsFinanceApproval(ExceptionActionError):
    """A finance-sensitive event: it goes through a replay request a finance approver decides
    (``request`` is the one made for it, if any)."""

    def __init__(self, message: str, request: ReplayRequest | None = None) -> None:
        super().__init__(message)
        self.request = request


@dataclass(frozen=True)
class ExceptionItem:
    """One event waiting for recovery, with what recovers it."""

    pos: int
    id: str
    source: str
    type: str
    subject: str
    status: str
    category: str | None
    recoverability: str
    reason: str | None
    attempts: int
    time: datetime
    correlation_id: str
    finance_sensitive: bool


@dataclass(frozen=True)
class EventSummary:
    """An event a bulk replay would take (what its dry-run shows)."""

    pos: int
    id: str
    source: str
    type: str
    subject: str
    status: str
    time: datetime
    correlation_id: str
    finance_sensitive: bool


def recoverability_of(status: str, category: str | None, event_type: str) -> str:
    """Who or what recovers an event in ``status`` failed with ``category``."""
    if status == "pending":
        return "automatic_retry"
    if status == "dead" or category in TECHNICAL_CATEGORIES:
        return "technical"
    if category == "approval_required" or is_finance_sensitive(event_type):
        return "finance_approval"
    return "data_correction"


def _item(row: Any) -> ExceptionItem:
    return ExceptionItem(
        pos=int(row.pos),
        id=row.event_id,
        source=row.source,
        type=row.type,
        subject=row.subject,
        status=row.status,
        category=row.category,
        recoverability=recoverability_of(row.status, row.category, row.type),
        reason=row.last_error,
        attempts=int(row.attempts),
        time=row.time,
        correlation_id=row.correlation_id,
        finance_sensitive=is_finance_sensitive(row.type),
    )


def list_exceptions(
    runtime: Runtime,
    *,
    recoverability: str | None = None,
    limit: int = 50,
    after: int | None = None,
) -> list[ExceptionItem]:
    """Failed events (exception, dead) and events the engine is still retrying, in log order
    after position ``after`` (keyset paging), at most ``limit``."""
    if recoverability is not None and recoverability not in RECOVERABILITIES:
        raise ExceptionActionError(
            f"recoverability is {recoverability!r}; expected one of {list(RECOVERABILITIES)}"
        )
    limit = max(1, min(limit, MAX_LIMIT))
    found: list[ExceptionItem] = []
    cursor = after or 0
    waiting = or_(
        event_state.c.status.in_(("exception", "dead")),
        (event_state.c.status == "pending") & (event_state.c.attempts > 0),
    )
    with runtime.engine.connect() as conn:
        while len(found) < limit:
            rows = conn.execute(
                select(events, *STATE_COLUMNS)
                .select_from(EVENTS_WITH_STATE)
                .where(waiting, events.c.pos > cursor)
                .order_by(events.c.pos)
                .limit(max(limit, 200))
            ).all()
            if not rows:
                break
            for row in rows:
                item = _item(row)
                if recoverability in (None, item.recoverability):
                    found.append(item)
                    if len(found) == limit:
                        break
            cursor = int(rows[-1].pos)
    return found


def _failed(conn: Connection, pos: int) -> Any:
    row = conn.execute(
        select(events, *STATE_COLUMNS).select_from(EVENTS_WITH_STATE).where(events.c.pos == pos)
    ).first()
    if row is None:
        raise UnknownEvent(f"no event at position {pos}")
    if row.status not in ("exception", "dead"):
        raise ExceptionActionError(
            f"event {pos} ({row.event_id}) is {row.status}, not in the exception queue"
        )
    return row


def _audit(
    conn: Connection, by: Operator, action: str, row: Any, details: dict[str, Any], now: datetime
) -> None:
    append_audit(
        conn,
        [
            AuditEntry(
                by.name,
                action,
                f"event:{row.pos}",
                correlation_id=row.correlation_id,
                details={"event_id": row.event_id, "type": row.type, "via": by.via, **details},
            )
        ],
        now,
    )


def retry_exception(runtime: Runtime, pos: int, *, by: Operator) -> None:
    """Put a failed event back in its place; a finance-sensitive one raises NeedsFinanceApproval
    (request a replay instead, which a finance approver decides)."""
    by.require("operator", f"retry event {pos}")
    with runtime.engine.begin() as conn:
        row = _failed(conn, pos)
        if is_finance_sensitive(row.type):
            raise NeedsFinanceApproval(
                f"event {pos} ({row.type}) is finance-sensitive: request a replay of it, "
                "which a finance approver decides"
            )
        requeue_failed(conn, row.pos, row.subject)
        _audit(conn, by, "exception.retried", row, {"status": row.status}, runtime.clock.now())


def payload_diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """What changed from ``old`` to ``new`` as JSON-Patch-like operations (add, remove,
    replace with the old value), paths in RFC 6901 form."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            here = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in new:
                ops.append({"op": "remove", "path": here, "old": old[key]})
            elif key not in old:
                ops.append({"op": "add", "path": here, "value": new[key]})
            else:
                ops.extend(payload_diff(old[key], new[key], here))
        return ops
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": path or "/", "old": old, "value": new}]


def correct_and_retry(
    runtime: Runtime, pos: int, new_data: dict[str, Any], *, by: Operator, reason: str = ""
) -> ReplayRequest | None:
    """Replace a failed event's data and retry it, the diff audited. A finance-sensitive event
    is not changed now: a replay request carrying the correction is made (and returned); the
    correction applies when a finance approver approves it."""
    by.require("operator", f"correct event {pos}")
    if not isinstance(new_data, dict):
        raise ExceptionActionError(f"event {pos}: the corrected data must be a JSON object")
    try:
        encoded = encode_data(new_data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExceptionActionError(f"event {pos}: the corrected data is not JSON: {exc}") from None
    with runtime.engine.connect() as conn:
        row = _failed(conn, pos)
    diff = payload_diff(decode_data(row.data), new_data)
    if not diff:
        raise ExceptionActionError(f"event {pos}: the corrected data is the same as the current")
    if is_finance_sensitive(row.type):
        return request_replay(
            runtime,
            Selector(event_ids=(row.event_id,)),
            by=by,
            reason=reason or f"correct event {pos} ({len(diff)} change(s))",
            corrections={int(row.pos): new_data},
        )
    with runtime.engine.begin() as conn:
        row = _failed(conn, pos)
        conn.execute(update(events).where(events.c.pos == pos).values(data=encoded))
        requeue_failed(conn, row.pos, row.subject)
        _audit(
            conn,
            by,
            "exception.corrected",
            row,
            {"diff": diff, "reason": reason},
            runtime.clock.now(),
        )
    return None


def resolve_exception(runtime: Runtime, pos: int, *, by: Operator, reason: str) -> None:
    """Close a failed event without running it (fixed at its source, or not needed): it stops
    holding its subject, so the subject's later events flow; audited with the reason."""
    by.require("operator", f"resolve event {pos}")
    if not reason.strip():
        raise ExceptionActionError(f"resolving event {pos} needs a reason")
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        row = _failed(conn, pos)
        conn.execute(
            update(event_state)
            .where(event_state.c.pos == pos)
            .values(status="resolved", processed_at=now)
        )
        conn.execute(delete(parked_events).where(parked_events.c.event_pos == pos))
        conn.execute(
            update(subjects)
            .where(subjects.c.subject == row.subject)
            .values(held_by=case((subjects.c.held_by == pos, None), else_=subjects.c.held_by))
        )
        _audit(conn, by, "exception.resolved", row, {"status": row.status, "reason": reason}, now)


def preview_bulk_replay(runtime: Runtime, selector: Selector) -> list[EventSummary]:
    """Exactly the events ``request_replay`` would pin for ``selector`` now (a dry run)."""
    check_selector(selector)
    with runtime.engine.connect() as conn:
        rows = conn.execute(replayable(selector)).all()
    return [
        EventSummary(
            pos=int(r.pos),
            id=r.event_id,
            source=r.source,
            type=r.type,
            subject=r.subject,
            status=r.status,
            time=r.time,
            correlation_id=r.correlation_id,
            finance_sensitive=is_finance_sensitive(r.type),
        )
        for r in rows
    ]
