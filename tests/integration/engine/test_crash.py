"""Crash trials: real worker processes killed with SIGKILL at random points.

Each trial forks a worker process that drains the log; the parent kills it after a random
delay, and the handler itself kills its process right after a side effect (before the step is
recorded) with a small probability: the most adversarial point. After the trials a last worker
drains everything. Then: no event lost, no side effect duplicated, per-subject order kept.
"""

from __future__ import annotations

import asyncio
import os
import random
import select as fd_select
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import LONG
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import EVENTS_WITH_STATE, event_state, events
from support.effects import EffectStore
from support.load import load_factor

TRIALS = 1000 if LONG else 120
SUBJECTS = 25


def crash_registry(effects_path: Path, self_kill: float, seed: int) -> Registry:
    rng = random.Random(seed)
    store = EffectStore(effects_path)
    registry = Registry()

    @registry.on("test.contract.changed")
    async def handler(ctx: HandlerContext, event: Event) -> None:
        for step in ("billing.change", "erp.book"):

            def effect(key: str, step: str = step) -> int:
                n = store.write(key, event.subject, event.sequence or 0, step)
                if rng.random() < self_kill:
                    os.kill(os.getpid(), signal.SIGKILL)
                return n

            await ctx.step(step, effect)

    return registry


def run_worker_process(db_url: str, effects_path: Path, self_kill: float, seed: int) -> None:
    """Body of a forked worker: its own engine and connections, never the parent's."""
    try:
        runtime = Runtime.open(db_url, initialise=False, sqlite_synchronous="NORMAL")
        worker = Worker(
            runtime,
            crash_registry(effects_path, self_kill, seed),
            batch_size=random.Random(seed).choice([5, 20, 100]),
            max_subjects=10,
        )
        worker.recover_dead_leases()
        asyncio.run(worker.drain())
        os._exit(0)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(3)


def fork_worker(db_url: str, effects_path: Path, self_kill: float, seed: int) -> int:
    pid = os.fork()
    if pid == 0:
        run_worker_process(db_url, effects_path, self_kill, seed)
    return pid


def pending(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).where(event_state.c.status != "done")).scalar_one()
        )


@pytest.mark.slow
def test_sigkill_at_random_points_loses_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL")
    effects_path = tmp_path / "effects.sqlite"
    EffectStore(effects_path).close()
    rng = random.Random(20261126)
    appended = 0
    kills = 0
    for trial in range(TRIALS):
        if pending(runtime) < 150:
            batch = [
                new_event(
                    "test.contract.changed",
                    f"contract-{rng.randrange(SUBJECTS)}",
                    {"n": appended + i},
                )
                for i in range(300)
            ]
            runtime.log.append_many(batch)
            appended += len(batch)
        runtime.engine.dispose()  # no pooled connection crosses the fork
        # Children kill themselves right after 5% of side effects (before the step is
        # recorded); the parent kills the others at a random time within their batch.
        pid = fork_worker(db_url, effects_path, 0.05, trial)
        # stretched by the load, so a slow box's child has started work when most kills land
        time.sleep(rng.uniform(0.0, 0.12) * load_factor())
        try:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
        assert not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3), "worker crashed"
    # A last worker without external kills drains everything.
    runtime.engine.dispose()
    for _ in range(50):
        pid = fork_worker(db_url, effects_path, 0.0, 10_000)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if pending(runtime) == 0:
            break
    assert kills >= TRIALS * 0.5, f"only {kills} kills landed"

    with runtime.engine.connect() as conn:
        logged = conn.execute(
            select(events.c.subject, events.c.sequence, event_state.c.status).select_from(
                EVENTS_WITH_STATE
            )
        ).all()
    assert len(logged) == appended, "events lost from the log"
    assert {row.status for row in logged} == {"done"}
    store = EffectStore(effects_path)
    rows = store.rows()
    per_step: dict[tuple[str, int, str], int] = defaultdict(int)
    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for _, _, subject, sequence, step in rows:
        per_step[(subject, sequence, step)] += 1
        order[(subject, step)].append(sequence)
    expected = {(r.subject, r.sequence, s) for r in logged for s in ("billing.change", "erp.book")}
    assert set(per_step) == expected, "side effects missing"
    assert max(per_step.values()) == 1, "a side effect was duplicated under another key"
    for key, seqs in order.items():
        assert seqs == sorted(seqs), f"order broken for {key}: {seqs}"
    # The trials really did interrupt work: some side effects were re-attempted (same key).
    assert store.attempts() > len(rows)
    store.close()
    runtime.close()


@pytest.mark.slow
def test_append_acknowledged_before_kill_is_never_lost(db_url: str, tmp_path: Path) -> None:
    """Durable before acknowledged: every id a killed appender reported is in the log."""
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL")
    runtime.engine.dispose()
    trials = 40 if LONG else 10
    acked: list[str] = []
    for trial in range(trials):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            rt = Runtime.open(db_url, initialise=False, sqlite_synchronous="NORMAL")
            for i in range(100_000):
                ev = new_event("test.contract.changed", f"c{i % 7}", id=f"t{trial}-{i}")
                rt.log.append(ev)
                os.write(write_fd, f"{ev.id}\n".encode())
            os._exit(0)
        os.close(write_fd)
        # Kill only once the appender has acknowledged something, however loaded the machine.
        ready, _, _ = fd_select.select([read_fd], [], [], 60)
        assert ready, f"trial {trial}: the appender acknowledged nothing in 60 s"
        time.sleep(0.01 + trial * 0.003)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(read_fd) as pipe:
            acked += [line.strip() for line in pipe.read().splitlines()]
    acked = [a for a in acked if a]
    assert len(acked) >= trials  # every trial's appender got going before its kill
    with runtime.engine.connect() as conn:
        stored = set(conn.execute(select(events.c.event_id)).scalars())
    assert set(acked) <= stored
    runtime.close()
