"""Group commit of step records: batched, off the event loop, and still effectively once.

The crash tests SIGKILL a real worker process (a) right after a side effect, before its step is
handed to the recorder, and (b) after the record is queued for the group commit but before that
commit. The target (support.effects.EffectStore, a separate SQLite file) dedups by idempotency
key and counts every attempt: the re-run must call it again with the same key, and the effect
must exist once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError

from quote2cash.engine.audit import verify_audit
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.recorder import StepRecord, StepRecorder, StoreThread, commit_steps
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import event_state, events, steps
from support.effects import EffectStore

STEP = "charge_card"


def charging_registry(effects_path: Path, kill_marker: Path | None) -> Registry:
    """One step per event whose side effect is a keyed write to the effect store; with
    ``kill_marker``, the first effect of the run kills the process before ``step`` records it."""
    store = EffectStore(effects_path)
    registry = Registry()

    @registry.on("test.card.charged")
    async def charge(ctx: HandlerContext, event: Event) -> None:
        def effect(key: str) -> int:
            n = store.write(key, event.subject, event.sequence or 0, STEP)
            if kill_marker is not None and not kill_marker.exists():
                kill_marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return n

        await ctx.local_step(STEP, effect)

    return registry


def fork_worker(
    db_url: str, effects_path: Path, *, kill_marker: Path | None = None, linger: float = 0.0
) -> int:
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        runtime = Runtime.open(db_url, initialise=False, sqlite_synchronous="NORMAL")
        worker = Worker(runtime, charging_registry(effects_path, kill_marker), step_linger=linger)
        worker.recover_dead_leases()
        asyncio.run(worker.drain())
        os._exit(0)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(3)


def append_charges(runtime: Runtime, count: int) -> list[Event]:
    batch = [new_event("test.card.charged", f"card-{i % 5}", {"n": i}) for i in range(count)]
    runtime.log.append_many(batch)
    runtime.engine.dispose()  # no pooled connection crosses the fork
    return batch


def assert_each_charged_once(runtime: Runtime, effects_path: Path, count: int) -> int:
    """Every event done, one step row and one effect each; returns the effect attempts."""
    with runtime.engine.connect() as conn:
        statuses = conn.execute(select(event_state.c.status)).scalars().all()
        recorded = conn.execute(
            select(steps.c.idempotency_key).where(steps.c.name == STEP)
        ).scalars()
        keys = list(recorded)
    assert statuses == ["done"] * count
    store = EffectStore(effects_path)
    effects = store.rows()
    attempts = store.attempts()
    store.close()
    assert len(effects) == count, "a side effect was lost or duplicated under another key"
    assert sorted(keys) == sorted(row[1] for row in effects), "steps and effects disagree"
    assert verify_audit(runtime.engine).ok
    return attempts


def wait_for(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return status


def test_kill_between_side_effect_and_step_record_does_not_repeat_the_effect(
    db_url: str, tmp_path: Path
) -> None:
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL")
    effects_path, marker = tmp_path / "effects.sqlite", tmp_path / "killed"
    EffectStore(effects_path).close()
    append_charges(runtime, 20)

    status = wait_for(fork_worker(db_url, effects_path, kill_marker=marker))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert marker.exists()
    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(steps)).scalar_one() == 0
    assert wait_for(fork_worker(db_url, effects_path)) == 0

    attempts = assert_each_charged_once(runtime, effects_path, 20)
    assert attempts == 21, "the killed step re-ran once, with the same key"
    runtime.close()


def test_kill_after_record_queued_before_group_commit_repeats_step_not_effect(
    db_url: str, tmp_path: Path
) -> None:
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL")
    effects_path = tmp_path / "effects.sqlite"
    EffectStore(effects_path).close()
    append_charges(runtime, 20)

    # The recorder lingers 60 s before committing: every record is queued, none committed.
    pid = fork_worker(db_url, effects_path, linger=60.0)
    store = EffectStore(effects_path)
    deadline = time.monotonic() + 120
    while len(store.rows()) < 5 and time.monotonic() < deadline:  # one per subject
        time.sleep(0.05)
    assert len(store.rows()) == 5, "the worker never ran its first steps"
    time.sleep(0.3)  # the records are queued right after the effects return, with no await
    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(steps)).scalar_one() == 0
    os.kill(pid, signal.SIGKILL)
    status = wait_for(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    store.close()

    assert wait_for(fork_worker(db_url, effects_path)) == 0
    attempts = assert_each_charged_once(runtime, effects_path, 20)
    assert attempts == 25, "the 5 queued steps re-ran once each, with the same keys"
    runtime.close()


async def test_steps_of_many_subjects_share_commits(runtime: Runtime) -> None:
    registry = Registry()

    @registry.on("test.card.charged")
    async def charge(ctx: HandlerContext, event: Event) -> None:
        await ctx.local_step("reserve", lambda key: key)
        await ctx.local_step("capture", lambda key: key)

    runtime.log.append_many(
        [new_event("test.card.charged", f"card-{i}", {"n": i}) for i in range(200)]
    )
    report = await Worker(runtime, registry, max_subjects=200).drain()
    assert report.processed == 200
    assert report.steps_recorded == 400
    assert report.step_commits <= 10, f"{report.step_commits} commits for 400 steps"
    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(steps)).scalar_one() == 400
    assert verify_audit(runtime.engine).ok


async def test_store_calls_run_off_the_event_loop_thread(runtime: Runtime) -> None:
    """``serve``'s web app shares the loop: no worker statement may run on its thread."""
    registry = Registry()

    @registry.on("test.card.charged")
    async def charge(ctx: HandlerContext, event: Event) -> None:
        await ctx.local_step("reserve", lambda key: key)

    runtime.log.append_many(
        [new_event("test.card.charged", f"card-{i % 7}", {"n": i}) for i in range(50)]
    )
    threads: set[int] = set()

    def seen(*_: object) -> None:
        threads.add(threading.get_ident())

    sa_event.listen(runtime.engine, "before_cursor_execute", seen)
    try:
        report = await Worker(runtime, registry).drain()
    finally:
        sa_event.remove(runtime.engine, "before_cursor_execute", seen)
    assert report.processed == 50 and report.steps_recorded == 50
    assert threads, "no statement seen"
    assert threading.get_ident() not in threads


def test_a_step_recorded_by_another_worker_is_skipped_and_the_rest_committed(
    runtime: Runtime,
) -> None:
    batch = [new_event("test.card.charged", f"card-{i}", {"n": i}) for i in range(3)]
    runtime.log.append_many(batch)
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(events.c.event_id, events.c.pos))
        pos = {row.event_id: row.pos for row in rows}
    now = runtime.clock.now()
    records = [
        StepRecord(
            Event(**{**_fields(ev), "pos": pos[ev.id]}),
            STEP,
            f"key-{ev.id}",
            None,
            '"ok"',
            now,
            "engine",
        )
        for ev in batch
    ]
    assert commit_steps(runtime.engine, records[1:2], now) == 0
    assert commit_steps(runtime.engine, records, now) == 1
    with runtime.engine.connect() as conn:
        keys = conn.execute(select(steps.c.idempotency_key)).scalars().all()
    assert sorted(keys) == sorted(r.key for r in records)
    assert verify_audit(runtime.engine).ok


def _fields(ev: Event) -> dict[str, object]:
    return {f: getattr(ev, f) for f in ev.__struct_fields__}


async def test_projections_see_their_step_in_the_same_transaction(runtime: Runtime) -> None:
    """``project_step`` runs inside the group commit that records the step, never apart."""
    seen: list[tuple[str, bool, bool]] = []

    class StepsSeen:
        def on_step(self, conn: Connection, event: Event, step: str, result: str) -> None:
            recorded = conn.execute(
                select(func.count())
                .select_from(steps)
                .where(steps.c.event_pos == event.pos, steps.c.name == step)
            ).scalar_one()
            seen.append((step, conn.in_transaction(), recorded == 1))

        def on_done(self, conn: Connection, done: Sequence[Event]) -> None:
            return None

    registry = Registry()
    registry.add_projection(StepsSeen())

    @registry.on("test.card.charged")
    async def charge(ctx: HandlerContext, event: Event) -> None:
        await ctx.local_step("reserve", lambda key: key)

    runtime.log.append_many(
        [new_event("test.card.charged", f"card-{i}", {"n": i}) for i in range(20)]
    )
    report = await Worker(runtime, registry).drain()
    assert report.processed == 20 and report.step_commits < 20
    assert seen == [("reserve", True, True)] * 20


async def test_a_failed_group_commit_reaches_its_waiters_and_leaves_no_unseen_error(
    runtime: Runtime,
) -> None:
    """Every handler waiting on a commit that fails gets its error; a record whose handler is
    gone (cancelled, never resumed) leaves no "exception was never retrieved" behind."""
    batch = [new_event("test.card.charged", f"card-{i}", {"n": i}) for i in range(2)]
    runtime.log.append_many(batch)
    with runtime.engine.connect() as conn:
        pos = {r.event_id: r.pos for r in conn.execute(select(events.c.event_id, events.c.pos))}
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE steps")  # every commit of a step now fails
    now = runtime.clock.now()
    loop = asyncio.get_running_loop()
    unseen: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unseen.append(context))
    store = StoreThread("test-store")
    recorder = StepRecorder(runtime.engine, store, runtime.clock)
    try:
        waited, dropped = (
            recorder.record(
                StepRecord(
                    Event(**{**_fields(ev), "pos": pos[ev.id]}), STEP, "k", None, "1", now, "engine"
                )
            )
            for ev in batch
        )
        with pytest.raises(DBAPIError):
            await waited
        assert dropped.done() and not dropped.cancelled()  # failed too; never looked at
    finally:
        await recorder.close()
        store.close()
    del waited, dropped
    gc.collect()
    await asyncio.sleep(0)
    assert unseen == []
