"""The archive schedule of ``q2c serve``: a run off the event loop every interval, the first
one ``min(interval, 10 min)`` after start (a short-lived or restarted hub still archives, a test
hub does not archive at once). A failed run is logged and tried again next time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quote2cash.engine.runtime import Runtime
    from quote2cash.retention.policy import RetentionPolicy

log = logging.getLogger(__name__)

FIRST_RUN_AFTER = 600.0


@dataclass(frozen=True)
class ArchiveSchedule:
    every: float
    folder: Path
    policy: RetentionPolicy
    max_events: int = 200_000


async def archive_forever(runtime: Runtime, stop: asyncio.Event, schedule: ArchiveSchedule) -> None:
    from quote2cash.retention.archive import run_archive  # pyarrow loads only when it runs

    wait = min(schedule.every, FIRST_RUN_AFTER)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
        if stop.is_set():
            return
        wait = schedule.every
        try:
            report = await asyncio.to_thread(
                run_archive,
                runtime,
                schedule.folder,
                schedule.policy,
                limit=schedule.max_events,
                via="serve",
            )
        except Exception as exc:
            log.warning("archive run failed (%s); next try in %.0f s", type(exc).__name__, wait)
            continue
        if report.events:
            log.info(
                "archived %d event(s) to %s (run %s)%s",
                report.events,
                report.file,
                report.run_id,
                "; more wait" if report.more else "",
            )
            if report.more:
                wait = min(wait, 1.0)
