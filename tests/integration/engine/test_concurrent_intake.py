"""Intake and dispatch at the same time on one store: no deadlock, nothing lost, order kept.

Appenders lock subject rows in subject order; a worker committing its batch must lock them in
the same order, or PostgreSQL finds a deadlock (seen in the throughput benchmark).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker


def test_appending_while_two_workers_dispatch(db_url: str) -> None:
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL")
    seen: dict[str, list[int]] = defaultdict(list)
    registry = Registry()

    @registry.on("test.item.changed")
    async def handler(ctx: HandlerContext, event: Event) -> None:
        seen[event.subject].append(event.sequence or 0)

    total, subjects = 30000, 1000
    batches = [
        [new_event("test.item.changed", f"s{(i * 7 + j) % subjects}") for j in range(1000)]
        for i in range(total // 1000)
    ]
    errors: list[BaseException] = []

    def intake() -> None:
        try:
            for batch in batches:
                runtime.log.append_many(batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=intake)
    workers = [
        Worker(runtime, registry, worker_id=f"w{n}", batch_size=2000, max_subjects=subjects)
        for n in range(2)
    ]

    async def dispatch() -> int:
        done = 0
        idle_rounds = 0
        while idle_rounds < 3:
            reports = await asyncio.gather(*(w.run_once() for w in workers))
            done += sum(r.processed for r in reports)
            busy = thread.is_alive() or any(not r.idle for r in reports)
            idle_rounds = 0 if busy else idle_rounds + 1
        return done

    thread.start()
    processed = asyncio.run(dispatch())
    thread.join()
    assert errors == []
    assert processed == total
    assert sum(len(v) for v in seen.values()) == total
    for subject, sequences in seen.items():
        assert sequences == list(range(1, len(sequences) + 1)), subject
    runtime.close()
