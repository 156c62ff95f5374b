"""A worker with ``refill_seconds`` claims newly ready subjects while a batch runs (issue 17's
quarter-end benchmark): a subject stuck on a slow system no longer holds back the subjects that
arrive after its batch began, and a subject's later events still run in order, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import event_state, steps


def test_subjects_arriving_mid_batch_run_before_the_slow_subject_ends(
    db_url: str, tmp_path: Path
) -> None:
    rt = Runtime.open(db_url)
    release = asyncio.Event()
    order: list[str] = []
    registry = Registry()

    @registry.on("test.slow.requested")
    async def slow(ctx: HandlerContext, event: Event) -> None:
        await release.wait()  # a call to a slow system
        await ctx.local_step("slow.done", lambda _k: order.append(f"slow:{event.sequence}"))

    @registry.on("test.quick.requested")
    async def quick(ctx: HandlerContext, event: Event) -> None:
        await ctx.local_step("quick.done", lambda _k: order.append(event.subject))

    rt.log.append(new_event("test.slow.requested", "contract:slow", {}))
    worker = Worker(rt, registry, refill_seconds=0.05, commit_interval=0.02)

    async def run() -> None:
        batch = asyncio.ensure_future(worker.run_once())
        await asyncio.sleep(0.3)
        rt.log.append_many(
            [new_event("test.quick.requested", f"contract:q{i}", {}) for i in range(3)]
        )
        rt.log.append(
            new_event("test.slow.requested", "contract:slow", {})
        )  # behind the running one
        for _ in range(200):
            if len(order) >= 3:
                break
            await asyncio.sleep(0.05)
        assert not batch.done(), "the batch ended before the slow subject did"
        release.set()
        await batch
        await worker.drain()

    try:
        asyncio.run(run())
        assert sorted(order[:3]) == ["contract:q0", "contract:q1", "contract:q2"]
        assert order[3:] == ["slow:1", "slow:2"]
        with rt.engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    select(event_state.c.status, func.count()).group_by(event_state.c.status)
                ).all()
            )
            recorded = conn.execute(select(func.count()).select_from(steps)).scalar_one()
        assert statuses == {"done": 5}
        assert recorded == 5
    finally:
        worker.close()
        rt.close()
