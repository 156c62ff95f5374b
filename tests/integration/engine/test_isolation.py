"""Failure isolation: a paused system or open breaker holds its work in order; others flow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.control import (
    pause_system,
    resume_system,
    schedule_window,
    system_status,
)
from quote2cash.engine.errors import TransientError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.systems import SystemLimits
from quote2cash.engine.worker import Worker
from quote2cash.identity import Operator
from quote2cash.store.schema import steps
from support.ledger import Ledger

OPS = Operator("ops", frozenset({"operator"}), via="token")
"""An operator as a token of theirs authenticates them."""


def two_system_registry(ledgers: dict[str, Ledger]) -> Registry:
    registry = Registry()

    @registry.on("erp.invoice.requested", systems=("erp",))
    async def to_erp(ctx: HandlerContext, event: Event) -> None:
        await ctx.step(
            "erp.post",
            lambda k: ledgers["erp"].write(k, event.subject, event.sequence or 0),
        )

    @registry.on("billing.usage.requested", systems=("billing",))
    async def to_billing(ctx: HandlerContext, event: Event) -> None:
        await ctx.step(
            "billing.report",
            lambda k: ledgers["billing"].write(k, event.subject, event.sequence or 0),
        )

    return registry


def book(runtime: Runtime, n: int) -> None:
    batch = []
    for i in range(n):
        batch.append(new_event("erp.invoice.requested", f"erp-{i % 3}", {"i": i}))
        batch.append(new_event("billing.usage.requested", f"bill-{i % 3}", {"i": i}))
    runtime.log.append_many(batch)


async def test_maintenance_window_holds_erp_in_order_while_billing_flows(
    runtime: Runtime, clock: ManualClock
) -> None:
    ledgers = {"erp": Ledger(), "billing": Ledger()}
    worker = Worker(runtime, two_system_registry(ledgers), batch_size=7, max_subjects=2)
    start = clock.now()
    schedule_window(runtime, "erp", start, start + timedelta(hours=1), by=OPS, reason="ERP upgrade")
    book(runtime, 12)
    await worker.drain()
    assert ledgers["erp"].rows == {}
    assert sum(len(v) for v in ledgers["billing"].order.values()) == 12
    [erp] = [s for s in system_status(runtime) if s["system"] == "erp"]
    assert erp["held_subjects"] == 3
    clock.advance(1800)
    assert (await worker.drain()).processed == 0
    clock.advance(1801)  # the window ends: held work resumes by itself, in order
    await worker.drain()
    assert {s: seq for s, seq in ledgers["erp"].order.items()} == {
        f"erp-{k}": [1, 2, 3, 4] for k in range(3)
    }


async def test_manual_pause_and_resume(runtime: Runtime, clock: ManualClock) -> None:
    ledgers = {"erp": Ledger(), "billing": Ledger()}
    worker = Worker(runtime, two_system_registry(ledgers))
    pause_system(runtime, "erp", by=OPS, reason="month-end close")
    book(runtime, 6)
    await worker.drain()
    clock.advance(3600)  # a manual pause does not end by itself
    await worker.drain()
    assert ledgers["erp"].rows == {} and len(ledgers["billing"].rows) == 6
    resume_system(runtime, "erp", by=OPS)
    await worker.drain()
    assert ledgers["erp"].order == {f"erp-{k}": [1, 2] for k in range(3)}


async def test_open_breaker_holds_without_spending_attempts(
    db_url: str, clock: ManualClock
) -> None:
    runtime = Runtime.open(
        db_url,
        clock=clock,
        sqlite_synchronous="NORMAL",
        limits={"erp": SystemLimits(breaker_threshold=2, breaker_reset_seconds=60)},
    )
    down = {"erp": True}
    ledger = Ledger()
    registry = Registry()

    @registry.on(
        "erp.invoice.requested",
        systems=("erp",),
        retry=RetryPolicy(max_attempts=3, base_seconds=1, cap_seconds=1),
    )
    async def to_erp(ctx: HandlerContext, event: Event) -> None:
        def call(key: str) -> dict[str, object]:
            if down["erp"]:
                raise TransientError("503 Service Unavailable", system="erp")
            return ledger.write(key, event.subject, event.sequence or 0)

        await ctx.step("erp.post", call)

    runtime.log.append_many([new_event("erp.invoice.requested", f"s{i}") for i in range(4)])
    worker = Worker(runtime, registry, max_subjects=1)
    await worker.drain()
    breaker = runtime.gates.breaker("erp")
    assert breaker.state(clock.now()) == "open"
    with runtime.engine.connect() as conn:
        from sqlalchemy import func, select

        from quote2cash.store.schema import event_state

        attempts = conn.execute(select(func.sum(event_state.c.attempts))).scalar_one()
    assert attempts == 2  # two real failures opened it; the rest were held, not attempted
    down["erp"] = False
    clock.advance(61)  # half-open: one probe succeeds, the breaker closes, the rest drain
    await worker.drain()
    assert breaker.state(clock.now()) == "closed"
    assert len(ledger.rows) == 4
    runtime.close()


async def test_a_slow_subject_does_not_hold_back_the_others_commits(runtime: Runtime) -> None:
    """Subjects that finish are committed while a slow one is still waiting on its system."""
    import asyncio

    from quote2cash.engine.queries import list_events

    release = asyncio.Event()
    registry = Registry()

    @registry.on("erp.invoice.requested")
    async def handler(ctx: HandlerContext, event: Event) -> None:
        if event.subject == "slow":
            await release.wait()

    runtime.log.append_many(
        [new_event("erp.invoice.requested", s) for s in ("slow", "fast-1", "fast-2")]
    )
    worker = Worker(runtime, registry, commit_interval=0.01)
    batch = asyncio.ensure_future(worker.run_once())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        done = {r.subject for r in list_events(runtime, status="done")}
        if done == {"fast-1", "fast-2"}:
            break
        await asyncio.sleep(0.01)
    assert done == {"fast-1", "fast-2"}
    assert not batch.done()
    release.set()
    report = await batch
    assert report.processed == 3
    assert {r.subject for r in list_events(runtime, status="done")} == {"slow", "fast-1", "fast-2"}


async def test_a_step_named_for_a_system_is_gated_by_it_without_naming_it(
    runtime: Runtime,
) -> None:
    """``crm.get_deal`` waits while the CRM is paused (the system of a
    call is derived from the step's name, never optional), and the step is recorded under it."""
    calls: list[str] = []
    registry = Registry()

    @registry.on("crm.opportunity.closed_won")
    async def read_deal(ctx: HandlerContext, event: Event) -> None:
        await ctx.step("crm.get_deal", lambda k: calls.append(event.subject) or {"ok": True})
        await ctx.local_step("local.note", lambda k: {"noted": True})

    worker = Worker(runtime, registry)
    pause_system(runtime, "crm", by=OPS, reason="CRM release")
    runtime.log.append_many([new_event("crm.opportunity.closed_won", "deal-1")])
    await worker.drain()
    assert calls == []
    [crm] = [s for s in system_status(runtime) if s["system"] == "crm"]
    assert crm["held_subjects"] == 1
    resume_system(runtime, "crm", by=OPS)
    await worker.drain()
    assert calls == ["deal-1"]
    with runtime.engine.connect() as conn:
        recorded = dict(conn.execute(select(steps.c.name, steps.c.system)).all())
    assert recorded == {"crm.get_deal": "crm", "local.note": None}


async def test_a_step_whose_name_names_no_system_is_refused_before_it_runs(
    runtime: Runtime,
) -> None:
    """No system call goes ungated by a misspelt name: ``step`` takes only a target system's
    name, ``local_step`` (no system called, ungated) never one; either refusal runs nothing."""
    ran: list[str] = []
    ctx = HandlerContext(runtime, new_event("crm.opportunity.closed_won", "deal-1"), {})
    for name in ("ledger.post", "post_invoice", "ERP.post_invoice", "erpx.post"):
        with pytest.raises(ValueError, match="names no target system"):
            await ctx.step(name, lambda k: ran.append(k))
    for name in ("erp.post_invoice", "crm.note", "billing.x"):
        with pytest.raises(ValueError, match="gated step"):
            await ctx.local_step(name, lambda k: ran.append(k))
    assert ran == []
