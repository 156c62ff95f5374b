"""Retry a connector call as the engine's worker does (its RetryPolicy, Retry-After as a floor).

Connectors retry nothing themselves (DESIGN §4); contract tests of transient failures use this to
play the engine's layer and to count what reached it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from quote2cash.engine.errors import TransientError
from quote2cash.engine.retry import RetryPolicy

T = TypeVar("T")


def _quick() -> RetryPolicy:
    return RetryPolicy(max_attempts=10, base_seconds=0.01, cap_seconds=0.05)


@dataclass
class EngineLayer:
    """Runs a call until it succeeds or the policy is spent; keeps every transient failure."""

    policy: RetryPolicy = field(default_factory=_quick)
    failures: list[TransientError] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await call()
            except TransientError as failure:
                self.failures.append(failure)
                if self.policy.exhausted(len(self.failures)):
                    raise
                delay = self.policy.delay(len(self.failures), failure.retry_after)
                self.delays.append(delay)
                await asyncio.sleep(delay)
