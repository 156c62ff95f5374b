"""An amendment for a contract the hub does not know parks in its own lane, bounded: it is
forwarded to the contract's subject once the contract's activation makes it known, else it goes
to the exception queue with what it waited for. No external system is involved (the hub's own
state decides), so none is configured."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quote2cash.canonical import Amendment, Ref
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows.amendments import (
    AMENDMENT_WAIT,
    amendment_event,
    release_activation,
    request_amendment,
)
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import deal_event
from quote2cash.masterdata import load_catalog, load_entities
from quote2cash.masterdata.sync import SyncState
from quote2cash.masterdata.xref import Kind, XrefStore

CONFIG = packaged_config_dir()
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

    async def activated(ctx: HandlerContext, event: Event) -> None:
        """The activation's calls are not under test here, only what it releases."""
        release_activation(ctx, event, deps)

    registry.add("crm.amendment.requested", amendment)
    registry.add("crm.opportunity.closed_won", deal)
    registry.add("billing.subscription.activated", activated)
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


async def test_unknown_contract_parks_then_is_an_exception_naming_its_wait(
    runtime: Runtime,
) -> None:
    deps = deps_of(runtime)
    event = amendment_event(seat_change("sub_nobody"), None, time=START, correlation_id="c-1")
    assert event.subject == "crm-subscription:a01000000000001AAA"
    runtime.log.append_many([event])
    worker = worker_for(deps)
    assert (await worker.drain()).parked == 1
    [row] = list_events(runtime, subject=event.subject)
    assert row.status == "parked" and row.attempts == 0
    assert row.parked_on == "contract-known:billing:sub_nobody"
    assert row.park_reason is not None and "waiting for its contract" in row.park_reason
    assert isinstance(runtime.clock, ManualClock)
    runtime.clock.advance(AMENDMENT_WAIT.total_seconds() + 1)
    await worker.drain()
    [failed] = failed_events(runtime)
    assert (failed.id, failed.status, failed.category) == (event.id, "exception", "data")
    assert failed.last_error is not None
    assert "contract-known:billing:sub_nobody" in failed.last_error
    assert f"since {START.isoformat()}" in failed.last_error


async def test_contract_known_later_is_forwarded_to_its_subject(runtime: Runtime) -> None:
    deps = deps_of(runtime)
    event = amendment_event(seat_change("sub_later"), None, time=START, correlation_id="c-2")
    runtime.log.append_many([event])
    worker = worker_for(deps)
    await worker.drain()
    [waiting] = list_events(runtime, subject=event.subject)
    assert waiting.status == "parked"

    # The deal is closed, its billing subscription linked and activated: the request finds its
    # contract at once (no backoff to sit out).
    contract = deps.xref.ensure_global_id(Kind.SUBSCRIPTION, "crm", "006000000000001AAA")
    deps.xref.link(contract, "billing", "sub_later")
    runtime.log.append_many(
        [
            deal_event("006000000000001AAA", "C-UNIT-1", time=START),
            Event(
                id="evt_activated",
                source="billing",
                type="billing.subscription.activated",
                subject="billing:sub_later",
                time=START,
                correlation_id="c-3",
                data={"object_type": "subscription", "object_id": "sub_later"},
            ),
        ]
    )
    await worker.drain()

    [done] = list_events(runtime, subject=event.subject)
    assert done.status == "done"
    forwarded = [
        r for r in list_events(runtime, subject="contract:C-UNIT-1") if r.type == event.type
    ]
    assert len(forwarded) == 1
    # In the contract's subject it now waits for the contract's activation, blocking nothing.
    assert forwarded[0].status == "parked"
    assert forwarded[0].parked_on == "contract-activated:C-UNIT-1"
    assert forwarded[0].park_reason is not None
    assert "waiting for the activation of contract C-UNIT-1" in forwarded[0].park_reason
