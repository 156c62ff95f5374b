"""Fixtures for the engine suite."""

from __future__ import annotations

import pytest

from support.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()
