"""The hub's default trace sampler: every transaction at day-to-day pace, a bounded share in bursts.

Parent-based: a span whose parent is known (an event's run, a step, an outbound call, a caller's
``traceparent``) follows its parent's decision, so a trace is whole or absent. A new trace is
recorded while fewer than ``per_second`` were started in the last second: a token bucket that
holds one second's worth and refills continuously (Jaeger's rate-limiting sampler). Every
transaction is traced while the hub takes in fewer than that many a second; in a backfill or at
quarter-end, tracing costs a bounded amount however fast the engine runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

_EPSILON = 1e-9


class RateLimitedSampler(Sampler):
    """Records at most ``per_second`` new traces a second (bursts of up to one second's worth);
    0 records none of the hub's own (a caller's sampled ``traceparent`` is still followed)."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not per_second >= 0:
            raise ValueError(f"traces per second: expected 0 or more, got {per_second}")
        self.per_second = float(per_second)
        self._capacity = max(1.0, self.per_second)
        self._clock = clock
        self._tokens = self._capacity if self.per_second > 0 else 0.0
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        refill = max(0.0, now - self._last) * self.per_second
        self._last = now
        self._tokens = min(self._capacity, self._tokens + refill)

    def has_token(self) -> bool:
        """Whether a new trace would be recorded now, taking no token (a caller that would
        make an SDK span only to see it dropped asks first; a race only drops one more)."""
        with self._lock:
            self._refill()
            return self._tokens >= 1.0 - _EPSILON

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        with self._lock:
            self._refill()
            taken = self._tokens >= 1.0 - _EPSILON  # 0.1 s at 10/s is a whole token
            if taken:
                self._tokens = max(0.0, self._tokens - 1.0)
        if taken:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return f"RateLimited{{{self.per_second:g}/s}}"


def rate_limited_sampler(
    per_second: float, clock: Callable[[], float] = time.monotonic
) -> ParentBased:
    """Parent-based, its roots rate-limited: the sampler ``q2c`` uses unless
    ``OTEL_TRACES_SAMPLER`` names another."""
    return ParentBased(root=RateLimitedSampler(per_second, clock))
