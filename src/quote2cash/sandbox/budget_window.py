"""The emulators' own count of calls above a configured budget, server-side (issue 17).

A sliding window: a call is over budget when, counting it, more than ``burst + rate x window``
calls arrived in the trailing ``window`` seconds, which is what a token bucket of that rate and
burst admits at most. The emulator still answers such a call (refusing is the separate rate
limiter's job): a benchmark reads how many calls the hub sent beyond what it was allowed.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class BudgetWindow:
    """Counts calls beyond ``burst + rate x window`` in any trailing ``window`` seconds; a rate
    of ``None`` counts nothing."""

    rate: float | None = None
    burst: float = 0.0
    window: float = 1.0
    calls: int = 0
    over_budget: int = 0
    peak: int = 0
    _arrivals: deque[float] = field(default_factory=deque, repr=False)

    def configure(
        self, *, rate: float | None, burst: float | None = None, window: float | None = None
    ) -> None:
        """A new budget; the counts start again."""
        if rate is not None and rate <= 0:
            raise ValueError(f"budget_rate: expected a number > 0, got {rate}")
        if window is not None and window <= 0:
            raise ValueError(f"budget_window_seconds: expected a number > 0, got {window}")
        self.rate = rate
        self.burst = float(burst if burst is not None else (rate or 0.0))
        self.window = float(window or 1.0)
        self.reset()

    def reset(self) -> None:
        self.calls = self.over_budget = self.peak = 0
        self._arrivals.clear()

    def arrive(self, now: float | None = None) -> bool:
        """Count one call arriving ``now`` (monotonic seconds); True if it is over budget."""
        if self.rate is None:
            return False
        at = time.monotonic() if now is None else now
        self.calls += 1
        arrivals = self._arrivals
        arrivals.append(at)
        while arrivals and arrivals[0] <= at - self.window:
            arrivals.popleft()
        in_window = len(arrivals)
        self.peak = max(self.peak, in_window)
        if in_window > self.burst + self.rate * self.window:
            self.over_budget += 1
            return True
        return False

    def summary(self) -> dict[str, float | int | None]:
        return {
            "budget_rate": self.rate,
            "budget_burst": self.burst,
            "budget_window_seconds": self.window,
            "budget_calls": self.calls,
            "over_budget": self.over_budget,
            "peak_in_window": self.peak,
        }
