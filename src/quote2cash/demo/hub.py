"""The hub as the demo runs it: one worker on a SQLite store, fed by polling the CRM and billing.

``settle`` is what a running ``q2c serve`` does continuously, done in rounds so the demo can show
progress between them: take in what changed, then work until nothing is ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from quote2cash.connectors.registry import Systems
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import poll_billing, poll_crm
from quote2cash.store.schema import event_state, subjects

Progress = Callable[[int, int], None]
"""Called with (events done, events logged) after every batch."""


@dataclass
class DemoHub:
    runtime: Runtime
    deps: FlowDeps
    worker: Worker
    systems: Systems

    @classmethod
    def build(cls, runtime: Runtime, systems: Systems, config_dir: Path) -> DemoHub:
        deps = FlowDeps.build(runtime, systems, config_dir)
        worker = Worker(runtime, build_registry(deps), commit_interval=0.05)
        return cls(runtime, deps, worker, systems)

    async def intake_crm(self) -> int:
        assert self.systems.crm is not None
        return await poll_crm(self.runtime, self.systems.crm)

    async def intake(self, *, billing: bool = True) -> int:
        """Poll the CRM for won deals and billing for its events; returns how many were new."""
        assert self.systems.billing is not None
        new = await self.intake_crm()
        if billing:
            new += await poll_billing(self.runtime, self.systems.billing)
        return new

    async def settle(
        self, progress: Progress | None = None, *, billing: bool = True, rounds: int = 30
    ) -> None:
        """Take in and work until a round brings nothing new and nothing is ready now."""
        for _ in range(rounds):
            new = await self.intake(billing=billing)
            processed = 0
            while True:
                report = await self.worker.run_once()
                processed += report.processed
                if progress is not None:
                    progress(*self.counts())
                if report.idle:
                    break
            if new == 0 and processed == 0:
                return

    async def finish(self, progress: Progress | None = None, *, seconds: float = 120.0) -> bool:
        """Settle, then wait out retries scheduled a little later; True if nothing is left
        pending (held failures are not pending)."""
        deadline = time.monotonic() + seconds
        while True:
            await self.settle(progress)
            if self.pending() == 0:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.25)

    def counts(self) -> tuple[int, int]:
        with self.runtime.engine.connect() as conn:
            rows: dict[str, int] = {
                str(status): int(n)
                for status, n in conn.execute(
                    select(event_state.c.status, func.count()).group_by(event_state.c.status)
                )
            }
        total = sum(rows.values())
        return int(rows.get("done", 0)), total

    def pending(self) -> int:
        """Events still to run, not counting those queued behind an exception."""
        with self.runtime.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(
                        event_state.join(subjects, subjects.c.subject == event_state.c.subject)
                    )
                    .where(event_state.c.status == "pending", subjects.c.held_by.is_(None))
                ).scalar_one()
            )

    def held_for(self, system: str) -> int:
        """Subjects waiting for ``system`` to come back."""
        with self.runtime.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(subjects.c.waiting_on == system)
                ).scalar_one()
            )
