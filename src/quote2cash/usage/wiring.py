"""Where the commands find the hub's usage ledger (``UsageLedger``) for a store.

Usage intake owns the ledger; until its implementation is wired here, ``open_ledger`` returns
what ``use_ledger`` installed (an embedding process, a test), else None and the usage commands
say the ledger is not configured.
"""

from __future__ import annotations

from collections.abc import Callable

from quote2cash.engine.runtime import Runtime
from quote2cash.usage.records import UsageLedger

LedgerFactory = Callable[[Runtime], UsageLedger]

_factory: list[LedgerFactory] = []


def use_ledger(factory: LedgerFactory | None) -> None:
    """Make ``open_ledger`` build the ledger with ``factory`` (None: forget it)."""
    _factory.clear()
    if factory is not None:
        _factory.append(factory)


def open_ledger(runtime: Runtime) -> UsageLedger | None:
    """The usage ledger over ``runtime``'s store, or None if none is wired."""
    return _factory[0](runtime) if _factory else None
