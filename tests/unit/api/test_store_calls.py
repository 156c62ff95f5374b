"""The API's store calls on threads of its own: outcomes come back to the caller, the caller's
context reaches the call, a slow call times out without its late outcome landing anywhere, calls
run side by side, and closing lets a running call finish."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from quote2cash.api.store_calls import StoreThreads

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


async def test_result_exception_and_context_come_through() -> None:
    threads = StoreThreads()
    try:
        assert await threads.call(lambda: threading.current_thread().name, 5) != (
            threading.current_thread().name
        )
        WHO.set("deal-42")
        assert await threads.call(WHO.get, 5) == "deal-42"

        def fails() -> None:
            raise LookupError("no such row")

        with pytest.raises(LookupError, match="no such row"):
            await threads.call(fails, 5)

        def stops() -> None:
            raise StopIteration

        with pytest.raises(RuntimeError, match="StopIteration"):
            await threads.call(stops, 5)
    finally:
        threads.close()


async def test_a_slow_call_times_out_and_its_late_outcome_is_dropped() -> None:
    threads = StoreThreads()
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(10)
        finished.set()
        return "late"

    try:
        with pytest.raises(TimeoutError):
            await threads.call(slow, 0.05)
        release.set()
        assert await asyncio.to_thread(finished.wait, 10)
        assert await threads.call(lambda: "next", 5) == "next"  # the threads still serve
    finally:
        threads.close()


async def test_calls_run_side_by_side_up_to_the_limit() -> None:
    threads = StoreThreads(limit=3)
    barrier = threading.Barrier(3, timeout=10)
    try:
        names = await asyncio.gather(
            *(threads.call(lambda: (barrier.wait(), threading.current_thread().name)[1], 15)
              for _ in range(3))
        )  # fmt: skip
        assert len(set(names)) == 3  # each waited for the others: three threads at once
        more = await asyncio.gather(*(threads.call(lambda: 1, 5) for _ in range(20)))
        assert more == [1] * 20
        assert len(threads._threads) == 3
    finally:
        threads.close()


async def test_close_lets_the_running_call_finish_then_refuses() -> None:
    threads = StoreThreads()
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def write() -> None:
        started.set()
        release.wait(10)
        done.append("committed")

    running = asyncio.ensure_future(threads.call(write, 15))
    assert await asyncio.to_thread(started.wait, 10)
    closing = asyncio.ensure_future(asyncio.to_thread(threads.close))
    await asyncio.sleep(0.05)
    assert not closing.done()  # close waits for the call in flight
    release.set()
    await closing
    assert done == ["committed"]
    await running
    with pytest.raises(RuntimeError, match="closed"):
        await threads.call(lambda: None, 5)


async def test_start_runs_every_thread_before_any_call() -> None:
    threads = StoreThreads(limit=3, name="q2c-store-started")
    try:
        threads.start()
        threads.start()  # again: none more
        named = [t for t in threading.enumerate() if t.name.startswith("q2c-store-started")]
        assert len(named) == 3
        assert await threads.call(lambda: 7, 5) == 7
        named = [t for t in threading.enumerate() if t.name.startswith("q2c-store-started")]
        assert len(named) == 3
    finally:
        threads.close()
