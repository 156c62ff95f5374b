"""The engine's decisions as the signed-in operator takes them: the one place the console
calls engine actions, each checked for its role here and again by the engine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quote2cash.engine.control import pause_system, resume_system, schedule_window
from quote2cash.engine.exceptions import correct_and_retry, resolve_exception, retry_exception
from quote2cash.engine.replay import (
    ReplayRequest,
    Selector,
    approve_replay,
    reject_replay,
    request_replay,
)
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator


def request(runtime: Runtime, selector: Selector, by: Operator, reason: str) -> ReplayRequest:
    by.require("operator", "request a replay")
    return request_replay(runtime, selector, by=by, reason=reason)


def approve(runtime: Runtime, request_id: int, by: Operator, note: str) -> ReplayRequest:
    if not (by.holds("operator") or by.holds("finance_approver")):
        by.require("operator", "approve a replay")
    return approve_replay(runtime, request_id, by=by, note=note)


def reject(runtime: Runtime, request_id: int, by: Operator, note: str) -> ReplayRequest:
    if not (by.holds("operator") or by.holds("finance_approver")):
        by.require("operator", "reject a replay")
    return reject_replay(runtime, request_id, by=by, note=note)


def pause(runtime: Runtime, system: str, by: Operator, reason: str) -> None:
    by.require("operator", f"pause {system}")
    pause_system(runtime, system, by=by, reason=reason, wait=False)


def resume(runtime: Runtime, system: str, by: Operator, reason: str) -> None:
    by.require("operator", f"resume {system}")
    resume_system(runtime, system, by=by, reason=reason)


def window(
    runtime: Runtime, system: str, starts: datetime, ends: datetime, by: Operator, reason: str
) -> int:
    by.require("operator", f"schedule a maintenance window for {system}")
    return schedule_window(runtime, system, starts, ends, by=by, reason=reason)


def may_decide(by: Operator, req: ReplayRequest) -> bool:
    """Whether ``by`` sees approve/reject buttons: a pending request someone else made, and the
    finance-approver role for finance-sensitive events (the engine enforces the same)."""
    if req.status != "pending" or req.requested_by == by.name:
        return False
    if req.finance_sensitive:
        return by.holds("finance_approver")
    return by.holds("operator") or by.holds("finance_approver")


def retry(runtime: Runtime, pos: int, by: Operator) -> None:
    retry_exception(runtime, pos, by=by)


def correct(
    runtime: Runtime, pos: int, data: dict[str, Any], by: Operator, reason: str
) -> ReplayRequest | None:
    """Correct and retry; a finance-sensitive event becomes a replay request instead."""
    return correct_and_retry(runtime, pos, data, by=by, reason=reason)


def resolve(runtime: Runtime, pos: int, by: Operator, reason: str) -> None:
    resolve_exception(runtime, pos, by=by, reason=reason)
