"""Parking: an event that waits for another leaves its subject's queue, resumes in order when
the key it waits on is released (by any subject), and never waits silently forever."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
from datetime import timedelta

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select, update

from conftest import LONG
from integration.api.conftest import served
from quote2cash.api.app import build_app
from quote2cash.engine import context as context_module
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.queries import failed_events, list_events, status_counts
from quote2cash.engine.registry import Registry
from quote2cash.engine.replay import Selector, approve_replay, request_replay
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import (
    event_state,
    events,
    failures,
    park_keys,
    parked_events,
    steps,
    subjects,
)
from support.forger import forging, wipe_audit
from support.identity import first_admin, new_operator, token_of
from support.ledger import Ledger

STEP = "test.step.requested"
OTHER = "test.note.recorded"
WAIT = timedelta(hours=1)


def key(contract: str, n: int) -> str:
    return f"step-applied:{contract}:{n}"


def chain_registry(ledger: Ledger) -> Registry:
    """Step n of a contract needs step n-1 applied; it releases step n once applied."""
    registry = Registry()

    @registry.on(STEP)
    async def step(ctx: HandlerContext, event: Event) -> None:
        contract, n = event.data["contract"], int(event.data["n"])
        await ctx.local_step("prepare", lambda k: ledger.write(k, f"prepare:{contract}", n))
        needed = key(contract, n - 1)
        if n > 1 and not ctx.released(needed):
            ctx.park(needed, f"step {n} of {contract} waits for step {n - 1}", deadline=WAIT)
        await ctx.local_step("apply", lambda k: ledger.write(k, contract, n))
        ctx.release(key(contract, n))

    @registry.on(OTHER)
    async def note(ctx: HandlerContext, event: Event) -> None:
        await ctx.local_step("note", lambda k: ledger.write(k, event.subject, event.sequence or 0))

    return registry


def step_event(contract: str, n: int, subject: str | None = None) -> Event:
    return new_event(STEP, subject or f"contract:{contract}", {"contract": contract, "n": n})


async def test_a_parked_event_lets_later_events_run_and_resumes_when_released(
    runtime: Runtime,
) -> None:
    ledger = Ledger()
    worker = Worker(runtime, chain_registry(ledger))
    early = step_event("A", 2)
    runtime.log.append_many([early, new_event(OTHER, "contract:A"), new_event(OTHER, "contract:A")])
    report = await worker.drain()
    assert report.parked == 1 and report.processed == 2
    assert ledger.order["contract:A"] == [2, 3]  # the notes behind it ran
    assert "A" not in ledger.order
    [row] = list_events(runtime, status="parked")
    assert row.id == early.id
    assert row.parked_on == key("A", 1)
    assert row.park_reason == "step 2 of A waits for step 1"
    assert row.park_deadline == runtime.clock.now() + WAIT
    assert failed_events(runtime) == []
    assert status_counts(runtime)["parked"] == 1
    assert (await worker.drain()).processed == 0  # parked, not polled

    runtime.log.append(step_event("A", 1, subject="side:A"))  # released from another subject
    report = await worker.drain()
    assert report.unparked == 1 and report.processed == 2
    assert ledger.order["A"] == [1, 2]
    assert ledger.order["prepare:A"] == [2, 1]  # the parked run's step was not redone
    assert ledger.calls == len(ledger.rows)
    assert list_events(runtime, status="parked") == []
    assert status_counts(runtime) == {"done": 4, "held_subjects": 0}
    assert verify_audit(runtime.engine).ok


async def test_a_park_and_its_release_in_one_batch_of_one_subject(runtime: Runtime) -> None:
    ledger = Ledger()
    runtime.log.append_many([step_event("B", 3), step_event("B", 2), step_event("B", 1)])
    await Worker(runtime, chain_registry(ledger)).drain()
    assert ledger.order["B"] == [1, 2, 3]
    assert status_counts(runtime) == {"done": 3, "held_subjects": 0}


async def test_a_release_committed_between_a_park_and_its_commit_is_not_missed(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parking event has seen no release; another worker commits one before the park's
    commit: the event stays pending and completes (it is never parked on a released key).

    The interleaving is forced, not left to timing: the racing handler waits until step 2 has
    looked for step 1's release and not found it, and the batch commits once both are done."""
    ledger = Ledger()
    registry = chain_registry(ledger)
    other = Worker(runtime, registry, worker_id="other")
    looked = asyncio.Event()
    real = context_module.is_released

    def spying(engine: Engine, needed: str) -> bool:
        found = real(engine, needed)
        if needed == key("C", 1) and not found:
            looked.set()
        return found

    monkeypatch.setattr(context_module, "is_released", spying)

    @registry.on("test.release.raced")
    async def race(ctx: HandlerContext, event: Event) -> None:
        await asyncio.wait_for(looked.wait(), 10)
        runtime.log.append(step_event("C", 1, subject="side:C"))
        await other.drain()

    runtime.log.append_many([step_event("C", 2), new_event("test.release.raced", "race:C")])
    main = Worker(runtime, registry, worker_id="main", commit_interval=30.0)
    report = await main.run_once()
    assert report.parked == 0
    assert ledger.order["C"] == [1]
    assert list_events(runtime, status="parked") == []
    await Worker(runtime, registry).drain()
    assert ledger.order["C"] == [1, 2]
    assert status_counts(runtime) == {"done": 3, "held_subjects": 0}


async def test_waiting_on_a_released_key_is_retried_not_parked(runtime: Runtime) -> None:
    """A handler whose condition a release did not make true never spins parked on it."""
    registry = Registry(default_retry=RetryPolicy(max_attempts=2, base_seconds=1, cap_seconds=1))

    @registry.on(STEP)
    async def stubborn(ctx: HandlerContext, event: Event) -> None:
        ctx.park("done:G", "waits whatever happens", deadline=WAIT)

    @registry.on(OTHER)
    async def releaser(ctx: HandlerContext, event: Event) -> None:
        ctx.release("done:G")

    runtime.log.append(new_event(OTHER, "side:G"))
    worker = Worker(runtime, registry)
    await worker.drain()
    runtime.log.append(step_event("G", 2))
    await worker.drain()
    runtime.clock.advance(2)  # type: ignore[attr-defined]
    await worker.drain()
    [row] = failed_events(runtime)
    assert row.status == "dead" and row.last_error is not None
    assert "done:G is released but the event still waits" in row.last_error


async def test_past_its_deadline_a_parked_event_is_an_exception_naming_what_it_waited_for(
    runtime: Runtime, clock: ManualClock
) -> None:
    ledger = Ledger()
    worker = Worker(runtime, chain_registry(ledger))
    waiting = step_event("D", 2)
    runtime.log.append(waiting)
    parked_at = clock.now()
    await worker.drain()
    clock.advance(WAIT.total_seconds() - 1)
    assert (await worker.drain()).expired == 0
    clock.advance(2)
    assert (await worker.drain()).expired == 1
    [row] = failed_events(runtime)
    assert (row.id, row.status, row.category) == (waiting.id, "exception", "data")
    assert row.last_error is not None
    assert key("D", 1) in row.last_error and "waits for step 1" in row.last_error
    assert f"since {parked_at.isoformat()}" in row.last_error
    # It holds nothing: the contract's later events still run.
    runtime.log.append(new_event(OTHER, "contract:D"))
    assert (await worker.drain()).processed == 1
    # A release now does not resurrect it; a replay (two people) does, and it completes.
    runtime.log.append(step_event("D", 1, subject="side:D"))
    assert (await worker.drain()).unparked == 0
    admin = first_admin(runtime)
    ana = new_operator(runtime, admin, "ana", "operator")
    ben = new_operator(runtime, admin, "ben", "operator")
    req = request_replay(runtime, Selector(event_ids=(waiting.id,)), by=ana, reason="ok")
    approve_replay(runtime, req.id, by=ben)
    await worker.drain()
    assert ledger.order["D"] == [1, 2]
    assert failed_events(runtime) == []
    assert verify_audit(runtime.engine).ok


async def test_a_release_by_a_worker_that_lost_its_lease_is_not_committed(
    runtime: Runtime,
) -> None:
    ledger = Ledger()
    registry = chain_registry(ledger)
    runtime.log.append(step_event("E", 2))
    await Worker(runtime, registry).drain()
    stolen = False

    @registry.on("test.lease.stolen")
    async def steal(ctx: HandlerContext, event: Event) -> None:
        nonlocal stolen
        if stolen:
            return
        with runtime.engine.begin() as conn:
            conn.execute(
                update(subjects)
                .where(subjects.c.subject == "side:E")
                .values(lease_owner="someone-else")
            )
        stolen = True

    runtime.log.append_many(
        [step_event("E", 1, subject="side:E"), new_event("test.lease.stolen", "side:E")]
    )
    report = await Worker(runtime, registry, worker_id="loser").run_once()
    assert stolen and report.lost_lease
    with runtime.engine.connect() as conn:
        assert conn.execute(select(park_keys.c.released_at)).scalars().all() in ([], [None])
    assert [r.parked_on for r in list_events(runtime, status="parked")] == [key("E", 1)]
    with runtime.engine.begin() as conn:  # the lease expires; another worker takes over
        conn.execute(update(subjects).values(lease_owner=None, lease_until=None))
    await Worker(runtime, registry, worker_id="winner").drain()
    assert ledger.order["E"] == [1, 2]
    assert status_counts(runtime) == {"done": 3, "held_subjects": 0}


# --- property: any arrival order of events that wait on each other ends in business order ----

EXAMPLES = 300 if LONG else 15


def reset(engine: Engine) -> None:
    with forging(engine) as conn:
        for table in (steps, failures, parked_events, park_keys, event_state, events, subjects):
            conn.execute(delete(table))
        wipe_audit(conn)


chains = st.fixed_dictionaries(
    {
        "lengths": st.lists(st.integers(1, 5), min_size=1, max_size=3),
        "seed": st.integers(0, 2**32),
        "lanes": st.integers(1, 3),
        "actions": st.lists(st.sampled_from(["append", "w0", "w1"]), max_size=30),
        "batch": st.sampled_from([1, 2, 5, 50]),
    }
)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=chains)
def test_any_arrival_order_ends_with_every_event_done_in_business_order(
    runtime: Runtime, case: dict
) -> None:  # type: ignore[type-arg]
    reset(runtime.engine)
    rng = random.Random(case["seed"])
    ledger = Ledger()
    registry = chain_registry(ledger)
    arrivals = [
        step_event(f"K{c}", n, subject=f"lane{rng.randrange(case['lanes'])}:K{c}")
        for c, length in enumerate(case["lengths"])
        for n in range(1, length + 1)
    ]
    rng.shuffle(arrivals)
    workers = [
        Worker(runtime, registry, batch_size=case["batch"], worker_id=f"w{i}") for i in range(2)
    ]

    async def play() -> None:
        pending = list(arrivals)
        for action in case["actions"]:
            if action == "append" and pending:
                runtime.log.append(pending.pop(0))
            elif action in ("w0", "w1"):
                await workers[int(action[1])].run_once()
        runtime.log.append_many(pending)
        await workers[0].drain()
        await workers[1].drain()

    asyncio.run(play())
    for c, length in enumerate(case["lengths"]):
        assert ledger.order[f"K{c}"] == list(range(1, length + 1))
    assert status_counts(runtime) == {"done": len(arrivals), "held_subjects": 0}
    with runtime.engine.connect() as conn:
        assert conn.execute(select(parked_events)).all() == []


def test_the_cli_lists_a_parked_event_with_its_key_and_not_as_a_failure(db_url: str) -> None:
    rt = Runtime.open(db_url)
    rt.log.append(step_event("F", 2))
    asyncio.run(Worker(rt, chain_registry(Ledger())).drain())
    rt.close()
    env = {**os.environ, "Q2C_DATABASE_URL": db_url, "COLUMNS": "400"}
    cli = [sys.executable, "-m", "quote2cash.cli"]
    listed = subprocess.run(
        [*cli, "events", "list", "--status", "parked"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert "parked" in listed.stdout
    assert f"{key('F', 1)}: step 2 of F waits for step 1" in listed.stdout
    dlq = subprocess.run([*cli, "dlq", "list"], capture_output=True, text=True, env=env)
    assert dlq.returncode == 0, dlq.stderr
    assert "0 event(s) waiting" in dlq.stdout


def test_concurrent_workers_releasing_across_subjects_end_in_business_order(
    runtime: Runtime,
) -> None:
    """Two workers in their own threads (real concurrency on PostgreSQL), chains whose steps
    sit in different subjects, so commits release into each other's subjects."""
    ledger = Ledger()
    registry = chain_registry(ledger)
    rng = random.Random(7)
    arrivals = [
        step_event(f"X{c}", n, subject=f"lane{rng.randrange(6)}:X{c % 3}")
        for c in range(12)
        for n in range(1, 6)
    ]
    rng.shuffle(arrivals)
    runtime.log.append_many(arrivals)

    def work(name: str) -> None:
        worker = Worker(runtime, registry, worker_id=name, batch_size=3, max_subjects=2)
        asyncio.run(worker.drain())

    for _ in range(20):
        threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if status_counts(runtime).get("done") == len(arrivals):
            break
    for c in range(12):
        assert ledger.order[f"X{c}"] == [1, 2, 3, 4, 5]
    assert status_counts(runtime) == {"done": len(arrivals), "held_subjects": 0}
    assert verify_audit(runtime.engine).ok


async def test_the_api_lists_parked_events_with_what_they_wait_on(runtime: Runtime) -> None:
    runtime.log.append(step_event("H", 2))
    await Worker(runtime, chain_registry(Ledger())).drain()
    viewer = new_operator(runtime, first_admin(runtime), "ops-ui", "viewer")
    token = token_of(runtime, viewer)
    async with (
        served(build_app(runtime)) as base,
        aiohttp.ClientSession() as http,
        http.get(
            f"{base}/v1/events",
            params={"status": "parked"},
            headers={"Authorization": f"Bearer {token}"},
        ) as answered,
    ):
        assert answered.status == 200
        body = await answered.json()
    [row] = body["data"]
    assert row["status"] == "parked"
    assert row["parked"]["key"] == key("H", 1)
    assert row["parked"]["reason"] == "step 2 of H waits for step 1"
