"""Classified failure: transient retries with backoff, permanent to the exception queue."""

from __future__ import annotations

import random

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, TransientError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.queries import failed_events, find_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.replay import Selector, approve_replay, request_replay
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from support.identity import first_admin, new_operator
from support.ledger import Ledger


async def test_transient_failures_retry_with_backoff_then_succeed(
    runtime: Runtime, clock: ManualClock, ledger: Ledger
) -> None:
    fails_left = {"n": 3}
    policy = RetryPolicy(max_attempts=5, base_seconds=2.0, cap_seconds=60.0, rng=random.Random(7))
    expected = RetryPolicy(max_attempts=5, base_seconds=2.0, cap_seconds=60.0, rng=random.Random(7))
    registry = Registry()

    @registry.on("billing.subscription.activated", retry=policy)
    async def handler(ctx: HandlerContext, event: Event) -> None:
        if fails_left["n"]:
            fails_left["n"] -= 1
            raise TransientError("ERP timed out", system="erp", retry_after=None)
        await ctx.step("erp.book", lambda k: ledger.write(k, event.subject, event.sequence or 0))

    runtime.log.append(new_event("billing.subscription.activated", "sub_1"))
    worker = Worker(runtime, registry)
    for attempt in range(1, 4):
        report = await worker.drain()
        assert report.retried == 1 and report.processed == 0
        delay = expected.delay(attempt)
        assert 0 <= delay <= expected.ceiling(attempt) == 2.0 * 2 ** (attempt - 1)
        # Not a moment before the backoff ends ...
        clock.advance(max(0.0, delay - 0.001))
        if delay > 0.001:
            assert (await worker.drain()).idle
        clock.advance(0.002)
    report = await worker.drain()
    assert report.processed == 1
    info = find_event(runtime, runtime_event_id(runtime))
    assert info is not None
    assert info["event"]["status"] == "done"
    assert [f["attempt"] for f in info["failures"]] == [1, 2, 3]
    assert all("ERP timed out" in f["error"] for f in info["failures"])
    assert len(ledger.rows) == 1


def runtime_event_id(runtime: Runtime) -> str:
    from sqlalchemy import select

    from quote2cash.store.schema import events

    with runtime.engine.connect() as conn:
        return str(conn.execute(select(events.c.event_id)).scalar_one())


async def test_retry_after_is_a_floor(runtime: Runtime, clock: ManualClock) -> None:
    registry = Registry()
    calls = {"n": 0}

    @registry.on(
        "billing.invoice.finalized", retry=RetryPolicy(base_seconds=0.01, cap_seconds=0.01)
    )
    async def handler(ctx: HandlerContext, event: Event) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("429 Too Many Requests", system="billing", retry_after=30)

    runtime.log.append(new_event("billing.invoice.finalized", "in_1"))
    worker = Worker(runtime, registry)
    await worker.drain()
    clock.advance(29.9)
    assert (await worker.drain()).idle
    clock.advance(0.2)
    assert (await worker.drain()).processed == 1


async def test_exhausted_retries_dead_letter_and_hold_only_that_subject(
    runtime: Runtime, clock: ManualClock
) -> None:
    registry = Registry()
    ran: list[str] = []

    @registry.on(
        "crm.account.updated", retry=RetryPolicy(max_attempts=2, base_seconds=1, cap_seconds=1)
    )
    async def handler(ctx: HandlerContext, event: Event) -> None:
        if event.data.get("broken"):
            raise ConnectionError("connection reset by peer")
        ran.append(f"{event.subject}:{event.sequence}")

    runtime.log.append_many(
        [
            new_event("crm.account.updated", "acct-A", {"broken": True}),
            new_event("crm.account.updated", "acct-A"),
            new_event("crm.account.updated", "acct-B"),
        ]
    )
    worker = Worker(runtime, registry)
    await worker.drain()
    clock.advance(5)
    report = await worker.drain()
    assert report.dead == 1
    dead = failed_events(runtime, "dead")
    assert len(dead) == 1 and dead[0].subject == "acct-A" and dead[0].attempts == 2
    assert "ConnectionError: connection reset by peer" in (dead[0].last_error or "")
    assert ran == ["acct-B:1"]  # acct-A:2 waits behind its dead letter


async def test_permanent_failure_holds_subject_until_fixed_and_replayed(
    runtime: Runtime, clock: ManualClock, ledger: Ledger
) -> None:
    registry = Registry()
    fixed = {"currency": False}

    @registry.on("billing.invoice.finalized")
    async def post_invoice(ctx: HandlerContext, event: Event) -> None:
        if event.data["currency"] == "EUX" and not fixed["currency"]:
            raise DataError(
                f"invoice {event.data['n']}: field 'currency' is 'EUX'; expected ISO 4217"
            )
        await ctx.step("erp.post", lambda k: ledger.write(k, event.subject, event.sequence or 0))

    batch = [
        new_event("billing.invoice.finalized", "sub_A", {"n": 1, "currency": "USD"}),
        new_event("billing.invoice.finalized", "sub_A", {"n": 2, "currency": "EUX"}),
        new_event("billing.invoice.finalized", "sub_A", {"n": 3, "currency": "USD"}),
        new_event("billing.invoice.finalized", "sub_A", {"n": 4, "currency": "USD"}),
        new_event("billing.invoice.finalized", "sub_B", {"n": 1, "currency": "USD"}),
        new_event("billing.invoice.finalized", "sub_B", {"n": 2, "currency": "USD"}),
    ]
    runtime.log.append_many(batch)
    worker = Worker(runtime, registry)
    report = await worker.drain()
    assert report.exceptions == 1
    [exc] = failed_events(runtime, "exception")
    assert exc.subject == "sub_A" and exc.category == "data"
    assert "field 'currency'" in (exc.last_error or "")
    assert ledger.order == {"sub_A": [1], "sub_B": [1, 2]}
    # Time passing does not release the hold: only a person does.
    clock.advance(3600)
    assert (await worker.drain()).idle
    fixed["currency"] = True
    admin = first_admin(runtime)
    maker = new_operator(runtime, admin, "maker", "operator")
    checker = new_operator(runtime, admin, "checker", "operator", "finance_approver")
    req = request_replay(runtime, Selector(event_ids=(exc.id,)), by=maker, reason="fixed")
    approve_replay(runtime, req.id, by=checker)
    report = await worker.drain()
    assert report.processed == 3
    assert ledger.order["sub_A"] == [1, 2, 3, 4]
    assert failed_events(runtime) == []


async def test_unknown_event_type_goes_to_exception_queue(runtime: Runtime) -> None:
    runtime.log.append(new_event("crm.widget.exploded", "w1"))
    report = await Worker(runtime, Registry()).drain()
    assert report.exceptions == 1
    [row] = failed_events(runtime)
    assert row.category == "mapping" and "crm.widget.exploded" in (row.last_error or "")
