"""Backoff for transient failures: exponential with full jitter, never sooner than Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quote2cash.settings import Settings


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts every try; after the last one the event is dead-lettered."""

    max_attempts: int = 10
    base_seconds: float = 1.0
    cap_seconds: float = 600.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("RetryPolicy needs 0 < base_seconds <= cap_seconds")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The default budget the ``Q2C_RETRY_*`` settings give."""
        return cls(
            max_attempts=settings.retry_max_attempts,
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
        )

    def ceiling(self, attempt: int) -> float:
        """The largest delay after the ``attempt``-th failure (1-based)."""
        return float(min(self.cap_seconds, self.base_seconds * 2.0 ** max(0, attempt - 1)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter (uniform in [0, ceiling]); a server's Retry-After is a floor."""
        jittered = self.rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is not None and retry_after > jittered:
            return float(retry_after)
        return jittered

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
