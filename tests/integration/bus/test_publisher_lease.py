"""One publisher at a time per stream, elected through the store: several hub processes may all
run one (``q2c serve`` does when a bus is configured); the others wait, and take over when the
leader stops or its lease lapses."""

from __future__ import annotations

import asyncio
from collections import Counter

from integration.bus.conftest import fill, stream_count, stream_messages
from quote2cash.bus import outbox_store
from quote2cash.bus.publisher import BusConfig, BusPublisher
from quote2cash.engine.runtime import Runtime


async def _until(predicate, seconds: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


async def test_one_publisher_leads_and_the_next_takes_over_when_it_stops(
    runtime: Runtime, bus: BusConfig
) -> None:
    fill(runtime, 0, 300)
    first = BusPublisher(runtime.engine, bus, lease_seconds=1.0)
    second = BusPublisher(runtime.engine, bus, lease_seconds=1.0)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(first.run(stop_first)),
        asyncio.create_task(second.run(stop_second)),
    ]
    try:

        async def all_sent() -> bool:
            marked = first.stats.published + second.stats.published == 300
            return marked and await stream_count(bus) == 300

        await _until(all_sent)
        leader, other = (first, second) if first.stats.published else (second, first)
        assert (leader.stats.published, other.stats.published) == (300, 0)
        assert outbox_store.lease_owner(runtime.engine, bus.stream) == leader.owner

        (stop_first if leader is first else stop_second).set()  # the leader stops cleanly
        await tasks[0 if leader is first else 1]
        fill(runtime, 300, 100)

        async def taken_over() -> bool:
            return other.stats.published == 100 and await stream_count(bus) == 400

        await _until(taken_over)
        assert outbox_store.lease_owner(runtime.engine, bus.stream) == other.owner
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*tasks)
    ids = Counter(m.msg_id for m in await stream_messages(bus))
    assert len(ids) == 400 and max(ids.values()) == 1


async def test_a_lapsed_lease_is_taken(runtime: Runtime, bus: BusConfig) -> None:
    """A leader that hangs (holds the lease, renews nothing) loses it once it lapses."""
    hung = BusPublisher(runtime.engine, bus, lease_seconds=0.5)
    assert await hung.lead()
    waiting = BusPublisher(runtime.engine, bus, lease_seconds=0.5)
    assert not await waiting.lead()
    await asyncio.sleep(0.7)
    assert await waiting.lead()
    assert outbox_store.lease_owner(runtime.engine, bus.stream) == waiting.owner
