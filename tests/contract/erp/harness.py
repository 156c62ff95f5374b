"""The ERP implementations the contract suite runs against, each behind one ``ErpWorld``.

To add an implementation, write a context manager yielding its ``ErpWorld`` and add it to
``IMPLEMENTATIONS``; every scenario in this folder then runs against it too.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from quote2cash.connectors.roles import Erp

REQUIRE_SERVICES = os.environ.get("Q2C_REQUIRE_SERVICES") == "1"


def missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class ErpWorld:
    """What the scenarios may assume of one ERP: its entities, items, and how to connect.

    ``connect(page_size=None)`` opens a working connection (a small ``page_size`` forces paging
    where the implementation pages); ``connect_with_password`` the same with another password;
    ``connect_unreachable`` one whose server is down.
    """

    name: str
    currencies: dict[str, str]
    """legal entity code -> its currency"""
    sales_tax_rates: dict[str, Decimal]
    """legal entity code -> the rate its sales tax computes (0 if untaxed)"""
    item_codes: tuple[str, ...]
    connect: Callable[..., AbstractAsyncContextManager[Erp]]
    connect_with_password: Callable[[str], AbstractAsyncContextManager[Erp]]
    connect_unreachable: Callable[[], AbstractAsyncContextManager[Erp]]
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Strings that must never appear in an error message (the real password)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def tryton_world() -> Iterator[ErpWorld]:
    """A real Tryton 8.2 (SQLite) on a fresh clone of the cached sandbox template."""
    if shutil.which("trytond", path=str(Path(sys.executable).parent)) is None:
        missing("trytond is not installed in this venv (install the 'sandbox' extra)")
    from quote2cash.connectors.tryton import TrytonErp
    from quote2cash.sandbox.systems import tryton_config
    from quote2cash.sandbox.tryton import ITEM_MASTER, LEGAL_ENTITIES, TrytonSandbox

    sandbox = TrytonSandbox(backend="sqlite")
    endpoint = sandbox.start()
    try:
        config = tryton_config(endpoint)
        rates = {
            code: next(e.tax_rate for e in LEGAL_ENTITIES if e.key == key)
            for code, key in (("US", "inc"), ("DE", "gmbh"))
        }

        @asynccontextmanager
        async def connect(page_size: int | None = None) -> AsyncIterator[Erp]:
            options = {} if page_size is None else {"page_size": page_size}
            async with TrytonErp(config.model_copy(update=options)) as erp:
                yield erp

        @asynccontextmanager
        async def connect_with_password(password: str) -> AsyncIterator[Erp]:
            from pydantic import SecretStr

            async with TrytonErp(
                config.model_copy(update={"password": SecretStr(password)})
            ) as erp:
                yield erp

        @asynccontextmanager
        async def connect_unreachable() -> AsyncIterator[Erp]:
            down = config.model_copy(
                update={"base_url": f"http://127.0.0.1:{_free_port()}", "timeout": 5.0}
            )
            async with TrytonErp(down) as erp:
                yield erp

        yield ErpWorld(
            name="tryton",
            currencies={code: entity.currency for code, entity in config.legal_entities.items()},
            sales_tax_rates=rates,
            item_codes=tuple(item.code for item in ITEM_MASTER),
            connect=connect,
            connect_with_password=connect_with_password,
            connect_unreachable=connect_unreachable,
            secrets=(endpoint.password, endpoint.admin_password),
        )
    finally:
        sandbox.stop()


@contextmanager
def legacy_world() -> Iterator[ErpWorld]:
    """The sandbox legacy ERP (SOAP + batch files) on a fresh data folder, batch every 50 ms."""
    import tempfile

    from pydantic import SecretStr

    from quote2cash.connectors.legacy_erp import LegacyErp, LegacyErpConfig
    from quote2cash.sandbox.legacy_erp import ENTITIES, ITEMS, LegacyErpSandbox

    with tempfile.TemporaryDirectory(prefix="q2c-legacy-erp-") as workdir:
        sandbox = LegacyErpSandbox(Path(workdir), batch_seconds=0.05)
        endpoint = sandbox.start()
        try:
            config = LegacyErpConfig.for_sandbox(
                endpoint.base_url, endpoint.username, endpoint.password, endpoint.drop_folder
            )

            @asynccontextmanager
            async def connect(page_size: int | None = None) -> AsyncIterator[Erp]:
                options = {} if page_size is None else {"page_size": page_size}
                async with LegacyErp(config.model_copy(update=options)) as erp:
                    yield erp

            @asynccontextmanager
            async def connect_with_password(password: str) -> AsyncIterator[Erp]:
                wrong = config.model_copy(update={"password": SecretStr(password)})
                async with LegacyErp(wrong) as erp:
                    yield erp

            @asynccontextmanager
            async def connect_unreachable() -> AsyncIterator[Erp]:
                down = config.model_copy(
                    update={"base_url": f"http://127.0.0.1:{_free_port()}", "timeout": 5.0}
                )
                async with LegacyErp(down) as erp:
                    yield erp

            yield ErpWorld(
                name="legacy_erp",
                currencies={code: e.currency for code, e in config.legal_entities.items()},
                sales_tax_rates={
                    code: ENTITIES[e.code].tax_rate for code, e in config.legal_entities.items()
                },
                item_codes=tuple(item.code for item in ITEMS),
                connect=connect,
                connect_with_password=connect_with_password,
                connect_unreachable=connect_unreachable,
                secrets=(endpoint.password,),
            )
        finally:
            sandbox.stop()


IMPLEMENTATIONS: dict[str, Callable[[], AbstractContextManager[ErpWorld]]] = {
    "tryton": tryton_world,
    "legacy_erp": legacy_world,
}
"""Every ERP implementation the contract runs against: name -> how to stand one up."""
