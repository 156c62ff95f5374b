"""The exception queue by recoverability, and its actions: retry, correct-and-retry (diff
audited; finance-sensitive through an approved replay request), resolve, bulk-replay preview."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from quote2cash.engine.audit import verify_audit
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import (
    ApprovalRequiredError,
    AuthError,
    DataError,
    TransientError,
)
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.exceptions import (
    ExceptionActionError,
    NeedsFinanceApproval,
    correct_and_retry,
    list_exceptions,
    payload_diff,
    preview_bulk_replay,
    resolve_exception,
    retry_exception,
)
from quote2cash.engine.queries import list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.replay import Selector, approve_replay, request_replay
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.identity import NotAllowed, Operator
from quote2cash.store.schema import audit_log
from support.identity import first_admin, new_operator


class Desk:
    """Handlers that fail as told per subject until ``fixed``; record what they ran with."""

    def __init__(self) -> None:
        self.fixed: set[str] = set()
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.registry = Registry()
        self.registry.add("*", self.handle)

    async def handle(self, ctx: HandlerContext, event: Event) -> None:
        if event.subject not in self.fixed and not event.data.get("valid"):
            failure = event.data.get("fail")
            if failure == "data":
                raise DataError(f"{event.subject}: field 'tax_id' missing")
            if failure == "auth":
                raise AuthError("ERP refused the credentials", system="erp")
            if failure == "approval":
                raise ApprovalRequiredError("discount above 30 %")
            if failure == "transient":
                raise TransientError("ERP timed out", system="erp")
        self.ran.append((event.subject, dict(event.data)))


FAILURES = {
    "crm.account.updated": ("acct-data", "data"),
    "billing.invoice.finalized": ("contract:CN-FIN", "data"),
    "erp.customer.updated": ("acct-auth", "auth"),
    "crm.quote.discounted": ("acct-approval", "approval"),
    "erp.order.created": ("acct-transient", "transient"),
}


@pytest.fixture
def desk() -> Desk:
    return Desk()


@pytest.fixture
def team(runtime: Runtime) -> dict[str, Operator]:
    admin = first_admin(runtime)
    return {
        "admin": admin,
        "maria": new_operator(runtime, admin, "maria", "operator"),
        "fiona": new_operator(runtime, admin, "fiona", "finance_approver"),
        "vic": new_operator(runtime, admin, "vic", "viewer"),
    }


async def failed(runtime: Runtime, desk: Desk) -> dict[str, int]:
    """Every kind of failure logged and run once: event type -> its position."""
    for type_, (subject, failure) in FAILURES.items():
        runtime.log.append(
            new_event(type_, subject, {"fail": failure, "amount": "10.00"}, correlation_id="c-1")
        )
    await Worker(runtime, desk.registry).drain()
    return {r.type: r.pos for r in list_events(runtime, limit=100)}


def audited(runtime: Runtime, action: str) -> list[Any]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(select(audit_log).where(audit_log.c.action == action)))


async def test_the_queue_by_recoverability(runtime: Runtime, desk: Desk) -> None:
    pos = await failed(runtime, desk)
    items = list_exceptions(runtime)
    assert {i.type: i.recoverability for i in items} == {
        "crm.account.updated": "data_correction",
        "billing.invoice.finalized": "finance_approval",
        "erp.customer.updated": "technical",
        "crm.quote.discounted": "finance_approval",
        "erp.order.created": "automatic_retry",
    }
    assert [i.type for i in list_exceptions(runtime, recoverability="technical")] == [
        "erp.customer.updated"
    ]
    first = list_exceptions(runtime, limit=2)
    rest = list_exceptions(runtime, after=first[-1].pos)
    assert [i.pos for i in first + rest] == sorted(pos.values())
    with pytest.raises(ExceptionActionError, match="recoverability is 'urgent'"):
        list_exceptions(runtime, recoverability="urgent")


async def test_retry_puts_the_event_back_and_is_audited(
    runtime: Runtime, desk: Desk, team: dict[str, Operator]
) -> None:
    pos = await failed(runtime, desk)
    with pytest.raises(NotAllowed, match="vic"):
        retry_exception(runtime, pos["crm.account.updated"], by=team["vic"])
    with pytest.raises(NeedsFinanceApproval, match="finance-sensitive"):
        retry_exception(runtime, pos["billing.invoice.finalized"], by=team["maria"])
    with pytest.raises(ExceptionActionError, match="not in the exception queue"):
        retry_exception(runtime, pos["erp.order.created"], by=team["maria"])
    desk.fixed.add("acct-data")
    retry_exception(runtime, pos["crm.account.updated"], by=team["maria"])
    await Worker(runtime, desk.registry).drain()
    assert ("acct-data", {"fail": "data", "amount": "10.00"}) in desk.ran
    [entry] = audited(runtime, "exception.retried")
    assert entry.actor == "maria" and entry.entity == f"event:{pos['crm.account.updated']}"
    assert verify_audit(runtime.engine).ok


async def test_correct_and_retry_audits_the_diff(
    runtime: Runtime, desk: Desk, team: dict[str, Operator]
) -> None:
    pos = await failed(runtime, desk)
    corrected = {"fail": "data", "amount": "12.00", "valid": True}
    assert (
        correct_and_retry(runtime, pos["crm.account.updated"], corrected, by=team["maria"]) is None
    )
    await Worker(runtime, desk.registry).drain()
    assert ("acct-data", corrected) in desk.ran
    [entry] = audited(runtime, "exception.corrected")
    assert json.loads(entry.details)["diff"] == [
        {"op": "replace", "path": "/amount", "old": "10.00", "value": "12.00"},
        {"op": "add", "path": "/valid", "value": True},
    ]
    with pytest.raises(ExceptionActionError, match="not in the exception queue"):
        correct_and_retry(runtime, pos["crm.account.updated"], corrected, by=team["maria"])


async def test_a_finance_correction_waits_for_a_finance_approver(
    runtime: Runtime, desk: Desk, team: dict[str, Operator]
) -> None:
    pos = await failed(runtime, desk)
    invoice = pos["billing.invoice.finalized"]
    corrected = {"fail": "data", "amount": "10.00", "valid": True}
    request = correct_and_retry(runtime, invoice, corrected, by=team["maria"])
    assert request is not None and request.finance_sensitive and request.status == "pending"
    await Worker(runtime, desk.registry).drain()
    assert not any(subject == "contract:CN-FIN" for subject, _ in desk.ran), "not applied yet"
    with pytest.raises(NotAllowed):
        approve_replay(runtime, request.id, by=team["maria"])
    approve_replay(runtime, request.id, by=team["fiona"])
    await Worker(runtime, desk.registry).drain()
    assert ("contract:CN-FIN", corrected) in desk.ran


async def test_resolve_releases_the_subject(
    runtime: Runtime, desk: Desk, team: dict[str, Operator]
) -> None:
    pos = await failed(runtime, desk)
    runtime.log.append(new_event("erp.customer.updated", "acct-auth", {"valid": True}))
    await Worker(runtime, desk.registry).drain()
    assert not any(subject == "acct-auth" for subject, _ in desk.ran), "held by the failure"
    with pytest.raises(ExceptionActionError, match="needs a reason"):
        resolve_exception(runtime, pos["erp.customer.updated"], by=team["maria"], reason=" ")
    resolve_exception(
        runtime, pos["erp.customer.updated"], by=team["maria"], reason="fixed in the ERP"
    )
    await Worker(runtime, desk.registry).drain()
    assert ("acct-auth", {"valid": True}) in desk.ran
    assert all(i.pos != pos["erp.customer.updated"] for i in list_exceptions(runtime))
    [entry] = audited(runtime, "exception.resolved")
    assert json.loads(entry.details)["reason"] == "fixed in the ERP"


async def test_the_bulk_preview_is_exactly_what_the_request_pins(
    runtime: Runtime, desk: Desk, team: dict[str, Operator]
) -> None:
    await failed(runtime, desk)
    selector = Selector(correlation_id="c-1")
    preview = preview_bulk_replay(runtime, selector)
    request = request_replay(runtime, selector, by=team["maria"], reason="ERP is back")
    assert tuple(e.pos for e in preview) == request.positions
    assert {e.type for e in preview} == set(FAILURES) - {"erp.order.created"}
    assert any(e.finance_sensitive for e in preview)


def test_payload_diff_names_each_change() -> None:
    assert payload_diff({"a": {"b": 1, "c/d": 2}}, {"a": {"b": 2}, "e": [1]}) == [
        {"op": "replace", "path": "/a/b", "old": 1, "value": 2},
        {"op": "remove", "path": "/a/c~1d", "old": 2},
        {"op": "add", "path": "/e", "value": [1]},
    ]
