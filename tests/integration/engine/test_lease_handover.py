"""Lease handover, hand-driven clock, both backends: a worker that claimed subjects and died
holds them until the lease lapses, never longer; then the next claim of another worker takes
them before any subject that merely waited in the queue (they had events in flight)."""

from __future__ import annotations

from sqlalchemy import select

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.events import new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import subjects

LEASE = 10.0


async def test_a_dead_workers_subjects_go_first_to_the_next_claim_once_the_lease_lapses(
    runtime: Runtime, clock: ManualClock
) -> None:
    registry = Registry()
    runtime.log.append_many([new_event("test.contract.changed", "contract:in-flight", {})])
    dead = Worker(runtime, registry, worker_id="host:1:dead", lease_seconds=LEASE, max_subjects=5)
    assert dead._claim(clock.now()) == ["contract:in-flight"]  # claimed, then SIGKILLed
    clock.advance(1)
    # Queued afterwards but unclaimed since: older claimed_at (0) than the in-flight subject.
    runtime.log.append_many(
        [new_event("test.contract.changed", f"contract:queued-{i}", {}) for i in range(3)]
    )
    heir = Worker(runtime, registry, worker_id="host:2:heir", lease_seconds=LEASE, max_subjects=1)
    within = heir._claim(clock.now())
    assert within and "contract:in-flight" not in within  # the lease still runs
    clock.advance(LEASE)
    assert heir._claim(clock.now()) == ["contract:in-flight"]
    with runtime.engine.connect() as conn:
        owner = conn.execute(
            select(subjects.c.lease_owner).where(subjects.c.subject == "contract:in-flight")
        ).scalar_one()
    assert owner == "host:2:heir"


async def test_a_claim_fills_up_with_queued_subjects_after_the_lapsed_ones(
    runtime: Runtime, clock: ManualClock
) -> None:
    registry = Registry()
    runtime.log.append_many(
        [new_event("test.contract.changed", f"contract:{i}", {}) for i in range(4)]
    )
    dead = Worker(runtime, registry, worker_id="host:1:dead", lease_seconds=LEASE, max_subjects=2)
    held = dead._claim(clock.now())
    assert len(held) == 2
    clock.advance(LEASE + 1)
    heir = Worker(runtime, registry, worker_id="host:2:heir", lease_seconds=LEASE, max_subjects=3)
    claimed = heir._claim(clock.now())
    assert set(claimed[:2]) == set(held)  # the lapsed first, then one from the queue
    assert len(claimed) == 3 and len(set(claimed)) == 3
