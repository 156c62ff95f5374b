"""Per-system call figures of this hub process, read from its Prometheus instruments: calls
made, the share that failed, mean latency and the histogram bucket holding the p95."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from quote2cash.observability import metrics

FAILED = ("transient", "permanent")
MADE = ("ok", *FAILED)


@dataclass(frozen=True)
class CallFigures:
    system: str
    made: int
    failed: int
    unavailable: int  # held by a pause, window or open breaker: not made
    mean_seconds: float | None
    p95_at_most: float | None  # upper bound of the bucket holding the p95; inf above the last

    @property
    def error_ratio(self) -> float | None:
        return self.failed / self.made if self.made else None


def read_call_figures(registry: CollectorRegistry = metrics.REGISTRY) -> list[CallFigures]:
    """Figures per system since this process started (all operations together)."""
    outcomes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, float] = defaultdict(float)
    sums: dict[str, float] = defaultdict(float)
    for family in registry.collect():
        for sample in family.samples:
            system = sample.labels.get("system")
            if system is None:
                continue
            if sample.name == "q2c_system_calls_total":
                outcomes[system][sample.labels["outcome"]] += sample.value
            elif sample.name == "q2c_system_call_seconds_bucket":
                buckets[system][float(sample.labels["le"])] += sample.value
            elif sample.name == "q2c_system_call_seconds_count":
                counts[system] += sample.value
            elif sample.name == "q2c_system_call_seconds_sum":
                sums[system] += sample.value
    out = []
    for system in sorted(set(outcomes) | set(counts)):
        seen = outcomes[system]
        timed = counts[system]
        out.append(
            CallFigures(
                system=system,
                made=int(sum(seen[o] for o in MADE)),
                failed=int(sum(seen[o] for o in FAILED)),
                unavailable=int(seen["unavailable"]),
                mean_seconds=sums[system] / timed if timed else None,
                p95_at_most=_p95_bucket(buckets[system], timed),
            )
        )
    return out


def _p95_bucket(cumulative: dict[float, float], count: float) -> float | None:
    if not count:
        return None
    for bound in sorted(cumulative):
        if cumulative[bound] >= 0.95 * count:
            return bound
    return math.inf
