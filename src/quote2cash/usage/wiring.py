"""Where the commands find the hub's usage ledger (``UsageLedger``) for a store.

The ledger is usage intake's ``SqlUsageLedger`` over the store and the usage folder, unless
``use_ledger`` installed another (an embedding process, a test).
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
    """The usage ledger over ``runtime``'s store (and the usage folder of its settings)."""
    if _factory:
        return _factory[0](runtime)
    from quote2cash.settings import get_settings
    from quote2cash.usage.intake import usage_dir_for
    from quote2cash.usage.ledger import SqlUsageLedger

    url = runtime.engine.url.render_as_string(hide_password=False)
    return SqlUsageLedger(runtime.engine, usage_dir_for(url, get_settings().usage_dir))
