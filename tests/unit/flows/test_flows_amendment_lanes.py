"""An amendment for a contract the hub does not know waits in its own lane, bounded: it is
forwarded to the contract's subject once the contract is known, else dead-lettered with its
reason. No external system is involved (the hub's own state decides), so none is configured."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quote2cash.canonical import Amendment, Ref
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.queries import list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows.amendments import AMENDMENT_RETRY, amendment_event, request_amendment
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import deal_event
from quote2cash.masterdata import load_catalog, load_entities
from quote2cash.masterdata.sync import SyncState
from quote2cash.masterdata.xref import Kind, XrefStore

CONFIG = Path(__file__).parents[3] / "config"
START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", clock=ManualClock(START))
    yield rt
    rt.close()


def deps_of(runtime: Runtime) -> FlowDeps:
    return FlowDeps(
        runtime=runtime,
        crm_role=None,
        erp_role=None,
        billing_role=None,
        catalog=load_catalog(CONFIG / "catalog.yaml"),
        entities=load_entities(CONFIG / "entities.yaml"),
        xref=(xref := XrefStore(runtime.engine, runtime.clock)),
        sync=SyncState(runtime.engine, runtime.clock, xref),
    )


def worker_for(deps: FlowDeps) -> Worker:
    registry = Registry()

    async def amendment(ctx: HandlerContext, event: Event) -> None:
        await request_amendment(ctx, event, deps)

    async def deal(ctx: HandlerContext, event: Event) -> None:
        """The deal itself is not under test here."""

    registry.add("crm.amendment.requested", amendment, retry=AMENDMENT_RETRY)
    registry.add("crm.opportunity.closed_won", deal)
    return Worker(deps.runtime, registry, commit_interval=0.01)


def seat_change(billing_subscription: str) -> Amendment:
    return Amendment(
        external_ids={"crm": "a03000000000001AAA"},
        subscription=Ref(
            external_ids={"crm": "a01000000000001AAA", "billing": billing_subscription}
        ),
        subscription_item=Ref.external("billing", "si_1"),
        amendment_number=1,
        effective_at=START,
        new_quantity=7,
    )


async def run_for(worker: Worker, clock: ManualClock, rounds: int) -> None:
    for _ in range(rounds):
        await worker.drain()
        clock.advance(AMENDMENT_RETRY.cap_seconds + 1)


async def test_unknown_contract_is_dead_lettered_with_its_reason(runtime: Runtime) -> None:
    deps = deps_of(runtime)
    event = amendment_event(seat_change("sub_nobody"), None, time=START, correlation_id="c-1")
    assert event.subject == "crm-subscription:a01000000000001AAA"
    runtime.log.append_many([event])
    assert isinstance(runtime.clock, ManualClock)
    await run_for(worker_for(deps), runtime.clock, AMENDMENT_RETRY.max_attempts + 2)
    [row] = list_events(runtime, subject=event.subject)
    assert row.status == "dead"
    assert row.attempts == AMENDMENT_RETRY.max_attempts
    assert row.last_error is not None and "waiting for its contract" in row.last_error


async def test_contract_known_later_is_forwarded_to_its_subject(runtime: Runtime) -> None:
    deps = deps_of(runtime)
    event = amendment_event(seat_change("sub_later"), None, time=START, correlation_id="c-2")
    runtime.log.append_many([event])
    worker = worker_for(deps)
    assert isinstance(runtime.clock, ManualClock)
    await run_for(worker, runtime.clock, 2)
    [waiting] = list_events(runtime, subject=event.subject)
    assert waiting.status == "pending" and waiting.attempts == 2

    # The deal is closed and its billing subscription linked: the request finds its contract.
    contract = deps.xref.ensure_global_id(Kind.SUBSCRIPTION, "crm", "006000000000001AAA")
    deps.xref.link(contract, "billing", "sub_later")
    runtime.log.append_many([deal_event("006000000000001AAA", "C-UNIT-1", time=START)])
    await run_for(worker, runtime.clock, 2)

    [done] = list_events(runtime, subject=event.subject)
    assert done.status == "done"
    forwarded = [
        r for r in list_events(runtime, subject="contract:C-UNIT-1") if r.type == event.type
    ]
    assert len(forwarded) == 1
    # In the contract's subject it now waits for the activation, blocking nothing before it.
    assert forwarded[0].last_error is not None
    assert "waiting for the activation of contract C-UNIT-1" in forwarded[0].last_error
