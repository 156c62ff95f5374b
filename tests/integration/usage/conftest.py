from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.usage.intake import UsageIntake
from quote2cash.usage.ledger import SqlUsageLedger


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 4, 1, tzinfo=UTC))


@pytest.fixture
def usage_dir(tmp_path: Path) -> Path:
    return tmp_path / "usage"


@pytest.fixture
def intake(runtime: Runtime, usage_dir: Path, clock: ManualClock) -> Iterator[UsageIntake]:
    it = UsageIntake(runtime.engine, usage_dir, clock=clock)
    yield it
    it.close()


@pytest.fixture
def ledger(runtime: Runtime, usage_dir: Path) -> SqlUsageLedger:
    return SqlUsageLedger(runtime.engine, usage_dir)
