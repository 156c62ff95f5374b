"""What every console handler shares: the runtime, object links, the hub's status and the
session lifetime; and running store calls off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from aiohttp import web

from quote2cash.console.links import ObjectLinks
from quote2cash.console.session import DEFAULT_TTL
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata import GoldenCustomers

T = TypeVar("T")


@dataclass
class Console:
    runtime: Runtime
    links: ObjectLinks = field(default_factory=ObjectLinks)
    reconciliation: Callable[[], Any] = lambda: None
    """The latest reconciliation report kept in the store, None if none ran (called off the
    event loop: it reads the store)."""
    session_ttl: timedelta = DEFAULT_TTL
    oidc_enabled: bool = False
    config_dir: Path | None = None
    """Where matching.yaml and the rest are (None: the configuration in use)."""
    _golden: list[GoldenCustomers | None] = field(default_factory=list)

    def golden_customers(self) -> GoldenCustomers | None:
        """The golden record under the configuration's matching rules (loaded once)."""
        if not self._golden:
            from quote2cash.configuration import active_config_dir
            from quote2cash.flows.deps import golden_customers

            self._golden.append(
                golden_customers(self.runtime, self.config_dir or active_config_dir())
            )
        return self._golden[0]

    async def store(self, call: Callable[[], T]) -> T:
        return await asyncio.to_thread(call)


CONSOLE: Final = web.AppKey("console", Console)


def console_of(request: web.Request) -> Console:
    return request.config_dict[CONSOLE]
