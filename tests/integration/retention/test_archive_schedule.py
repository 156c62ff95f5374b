"""The archive schedule `q2c serve` runs: runs off the event loop on its interval, and stops."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from quote2cash.api.cli import _archive_schedule
from quote2cash.engine.events import new_event
from quote2cash.engine.queries import list_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.retention.policy import RetentionPolicy
from quote2cash.retention.restore import list_runs
from quote2cash.retention.schedule import ArchiveSchedule, archive_forever
from quote2cash.settings import Settings
from support.retention_handlers import registry


async def test_the_schedule_archives_expired_events_and_stops(
    runtime: Runtime, tmp_path: Path
) -> None:
    old = runtime.clock.now() - timedelta(days=120)
    runtime.log.append(new_event("crm.account.updated", "acct-1", id="old", time=old))
    now = runtime.clock.now()
    runtime.log.append(new_event("crm.account.updated", "acct-2", id="recent", time=now))
    await Worker(runtime, registry).drain()
    stop = asyncio.Event()
    schedule = ArchiveSchedule(0.2, tmp_path / "archive", RetentionPolicy(), 100)
    task = asyncio.create_task(archive_forever(runtime, stop, schedule))
    for _ in range(100):
        if list_runs(runtime):
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    [run] = list_runs(runtime)
    assert run.via == "serve" and run.events == 1
    assert [e.id for e in list_events(runtime)] == ["recent"]


def test_serve_reads_the_schedule_from_settings(runtime: Runtime, tmp_path: Path) -> None:
    settings = Settings(
        archive_interval_seconds=3600,
        archive_dir=str(tmp_path / "a"),
        retention_finance_days="none",  # type: ignore[arg-type]
        retention_other_days=30,
        retention_keep_types="crm.opportunity.closed_won, erp.customer.updated",
    )
    schedule = _archive_schedule(runtime, settings)
    assert schedule is not None
    assert (schedule.every, schedule.folder) == (3600, tmp_path / "a")
    assert schedule.policy == RetentionPolicy(
        0, 30, frozenset({"crm.opportunity.closed_won", "erp.customer.updated"})
    )
    assert _archive_schedule(runtime, Settings(archive_interval_seconds=0)) is None
