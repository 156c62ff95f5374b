"""Fixtures: a prepared store per module, a served copy per test, and Chromium's path."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import missing_service
from integration.console.site import ConsoleSite, Prepared, prepare, serving

CHROMIUM = os.environ.get("Q2C_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare(tmp_path_factory.mktemp("console"))


@pytest.fixture
async def site(prepared: Prepared, tmp_path: Path) -> AsyncIterator[ConsoleSite]:
    async with serving(prepared, tmp_path) as served:
        yield served


@pytest.fixture
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM
