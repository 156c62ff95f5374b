"""What every console handler shares: the runtime, object links, the hub's status and the
session lifetime; and running store calls off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, TypeVar

from aiohttp import web

from quote2cash.console.links import ObjectLinks
from quote2cash.console.session import DEFAULT_TTL
from quote2cash.engine.runtime import Runtime

T = TypeVar("T")


@dataclass
class Console:
    runtime: Runtime
    links: ObjectLinks = field(default_factory=ObjectLinks)
    reconciliation: Callable[[], Any] = lambda: None
    """The latest reconciliation report (``HubStatus.reconciliation``), None if none ran."""
    session_ttl: timedelta = DEFAULT_TTL
    oidc_enabled: bool = False

    async def store(self, call: Callable[[], T]) -> T:
        return await asyncio.to_thread(call)


CONSOLE: Final = web.AppKey("console", Console)


def console_of(request: web.Request) -> Console:
    return request.config_dict[CONSOLE]
