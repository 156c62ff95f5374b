"""Property tests: over random interleavings of appends, workers, failures and time, per-subject
order is never violated and every event takes effect exactly once."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from conftest import LONG
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import TransientError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import event_state, events, failures, steps, subjects
from support.forger import forging, wipe_audit
from support.ledger import Ledger

EXAMPLES = 400 if LONG else 20


def reset(engine: Engine) -> None:
    with forging(engine) as conn:
        for table in (steps, failures, event_state, events, subjects):
            conn.execute(delete(table))
        wipe_audit(conn)


scenario = st.fixed_dictionaries(
    {
        "subjects": st.lists(st.integers(0, 5), min_size=1, max_size=60),
        "chunks": st.lists(st.integers(1, 15), min_size=1, max_size=10),
        "fail_times": st.dictionaries(st.integers(0, 59), st.integers(1, 3), max_size=12),
        "actions": st.lists(
            st.sampled_from(["append", "w0", "w1", "tick", "w0", "w1"]), max_size=80
        ),
        "batch": st.sampled_from([1, 2, 3, 7, 50]),
        "max_subjects": st.sampled_from([1, 2, 4, 10]),
    }
)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario)
def test_order_and_exactly_once_under_interleavings(
    runtime: Runtime, clock: ManualClock, case: dict
) -> None:  # type: ignore[type-arg]
    reset(runtime.engine)
    ledger = Ledger()
    seen: dict[str, list[int]] = defaultdict(list)
    fails_left = dict(case["fail_times"])
    registry = Registry()
    retry = RetryPolicy(max_attempts=10, base_seconds=1, cap_seconds=4)

    @registry.on("test.item.changed", retry=retry)
    async def handler(ctx: HandlerContext, event: Event) -> None:
        n = event.data["n"]
        history = seen[event.subject]
        assert not history or history[-1] <= (event.sequence or 0), "order violated"
        history.append(event.sequence or 0)
        await ctx.local_step(
            "effect", lambda k: ledger.write(k, event.subject, event.sequence or 0)
        )
        if fails_left.get(n, 0) > 0:
            fails_left[n] -= 1
            raise TransientError("flaky target")

    all_events = [
        new_event("test.item.changed", f"s{s}", {"n": i}) for i, s in enumerate(case["subjects"])
    ]
    workers = [
        Worker(
            runtime,
            registry,
            batch_size=case["batch"],
            max_subjects=case["max_subjects"],
            worker_id=f"w{i}",
        )
        for i in range(2)
    ]
    cursor = 0
    chunks = list(case["chunks"])

    def append() -> None:
        nonlocal cursor
        size = chunks.pop(0) if chunks else len(all_events)
        runtime.log.append_many(all_events[cursor : cursor + size])
        cursor += size

    async def play() -> None:
        for action in case["actions"]:
            if action == "append" and cursor < len(all_events):
                append()
            elif action == "tick":
                clock.advance(1.5)
            elif action in ("w0", "w1"):
                await workers[int(action[1])].run_once()
        while cursor < len(all_events):
            append()
        for _ in range(200):
            await workers[0].drain()
            await workers[1].drain()
            if len(ledger.rows) == len(all_events) and not any(fails_left.values()):
                await workers[0].drain()
                break
            clock.advance(5)

    asyncio.run(play())
    per_subject: dict[str, list[int]] = defaultdict(list)
    for subject, seq in ledger.rows.values():
        per_subject[subject].append(seq)
    expected: dict[str, int] = defaultdict(int)
    for s in case["subjects"]:
        expected[f"s{s}"] += 1
    assert len(ledger.rows) == len(all_events)
    for subject, count in expected.items():
        assert ledger.order[subject] == list(range(1, count + 1))
    assert verify_audit(runtime.engine).ok
