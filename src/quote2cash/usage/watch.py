"""The usage drop folder: every usage file dropped in is ingested once, then moved to ``done/``
(or ``failed/`` when it cannot be read at all); a file being written is left for the next scan
(it must be unchanged for one scan first). Receipts say what each batch did."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Final

from sqlalchemy import Engine

from quote2cash.engine.clock import Clock
from quote2cash.usage.intake import BatchReceipt, UsageIntake, intake_for
from quote2cash.usage.reading import UsageFileError, format_of

log = logging.getLogger(__name__)
WATCH_ACTOR: Final = "usage-watch"


def _usage_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            format_of(path)
        except UsageFileError:
            continue
        found.append(path)
    return found


def watch_once(
    intake: UsageIntake,
    folder: Path,
    *,
    source: str,
    actor: str,
    settled: dict[Path, tuple[int, float]] | None = None,
) -> list[BatchReceipt]:
    """Ingest the folder's usage files; with ``settled`` (a scan's memory), only files whose
    size and modification time did not change since the previous scan."""
    receipts: list[BatchReceipt] = []
    for path in _usage_files(folder):
        stat = path.stat()
        if settled is not None:
            seen, settled[path] = settled.get(path), (stat.st_size, stat.st_mtime)
            if seen != (stat.st_size, stat.st_mtime):
                continue
            settled.pop(path, None)
        target = folder / "done"
        try:
            receipts.extend(intake.ingest_file(path, source=source, actor=actor))
        except (UsageFileError, OSError) as exc:
            log.warning("usage file %s not ingested: %s", path.name, exc)
            target = folder / "failed"
        target.mkdir(mode=0o700, exist_ok=True)
        path.replace(target / path.name)
    return receipts


async def watch_forever(
    engine: Engine,
    clock: Clock,
    folder: Path,
    stop: asyncio.Event,
    *,
    source: str = "drop",
    every: float = 5.0,
) -> None:
    """``q2c serve``'s drop-folder schedule: scan every ``every`` seconds until ``stop``."""
    await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
    settled: dict[Path, tuple[int, float]] = {}
    while not stop.is_set():
        intake = intake_for(engine, clock)
        try:
            receipts = await asyncio.to_thread(
                watch_once, intake, folder, source=source, actor=WATCH_ACTOR, settled=settled
            )
            for r in receipts:
                log.info(
                    "usage batch %s from %s: %d accepted, %d duplicate, %d quarantined",
                    r.batch_id,
                    r.origin,
                    r.accepted,
                    r.duplicate,
                    r.quarantined,
                )
        except Exception as exc:  # a scan that fails is retried at the next one
            log.warning("usage drop folder scan failed (%s)", type(exc).__name__)
        finally:
            intake.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
