"""Pure parts of the engine: backoff, token bucket, circuit breaker, handler resolution."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from quote2cash.engine.budgets import BucketState, Budget, reserve
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.systems import CircuitBreaker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=8, base_seconds=0.5, cap_seconds=20, rng=random.Random(1))
    ceilings = [policy.ceiling(a) for a in range(1, 9)]
    assert ceilings == [0.5, 1, 2, 4, 8, 16, 20, 20]
    delays = [policy.delay(a) for a in range(1, 9) for _ in range(200)]
    assert all(0 <= d <= 20 for d in delays)
    # Full jitter spreads over the whole range, not around the ceiling.
    late = [policy.delay(6) for _ in range(2000)]
    assert min(late) < 2 and max(late) > 14
    assert policy.exhausted(8) and not policy.exhausted(7)


def test_retry_after_is_a_floor_never_a_cap() -> None:
    policy = RetryPolicy(base_seconds=1, cap_seconds=2, rng=random.Random(3))
    assert all(policy.delay(1, retry_after=30) == 30 for _ in range(50))


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_seconds": 0}, {"base_seconds": 5, "cap_seconds": 1}]
)
def test_bad_retry_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_token_bucket_paces_requests_per_second() -> None:
    budget = Budget("erp", "calls", rate=10, burst=2)
    state = BucketState(2.0, T0)

    def wait(now: datetime) -> float:
        grant = reserve(state, budget, 1, now)
        return max(0.0, (1 - grant.tokens) / grant.rate)

    assert [wait(T0) for _ in range(5)] == pytest.approx([0, 0, 0.1, 0.2, 0.3])
    later = T0 + timedelta(seconds=10)
    assert wait(later) == 0  # refilled, but never above the burst
    assert wait(later) == 0
    assert wait(later) == pytest.approx(0.1)


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    breaker = CircuitBreaker(threshold=3, reset_seconds=30)
    for _ in range(2):
        breaker.failure(T0)
    assert breaker.state(T0) == "closed"
    breaker.success()
    for _ in range(3):
        breaker.failure(T0)
    assert breaker.state(T0) == "open"
    allowed, retry_at = breaker.allow(T0 + timedelta(seconds=10))
    assert not allowed and retry_at == T0 + timedelta(seconds=30)
    probe_time = T0 + timedelta(seconds=31)
    assert breaker.allow(probe_time) == (True, None)
    assert breaker.allow(probe_time)[0] is False  # one probe at a time
    breaker.failure(probe_time)  # the probe failed: open again from now
    assert breaker.state(probe_time + timedelta(seconds=29)) == "open"
    assert breaker.allow(probe_time + timedelta(seconds=31)) == (True, None)
    breaker.success()
    assert breaker.state(probe_time + timedelta(seconds=31)) == "closed"


def test_handler_resolution_exact_then_prefix_then_star() -> None:
    registry = Registry()

    async def a(ctx: object, ev: object) -> None: ...

    async def b(ctx: object, ev: object) -> None: ...

    async def c(ctx: object, ev: object) -> None: ...

    registry.add("billing.invoice.finalized", a)  # type: ignore[arg-type]
    registry.add("billing.*", b)  # type: ignore[arg-type]
    registry.add("*", c)  # type: ignore[arg-type]
    assert registry.resolve("billing.invoice.finalized").fn is a  # type: ignore[union-attr]
    assert registry.resolve("billing.payment.failed").fn is b  # type: ignore[union-attr]
    assert registry.resolve("crm.account.updated").fn is c  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="already registered"):
        registry.add("billing.*", a)  # type: ignore[arg-type]


def test_a_worker_freezes_the_start_up_heap_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Full collections then skip the start-up heap; a second worker or drain freezes nothing
    more (what the work made stays collectable)."""
    from quote2cash.engine import worker

    frozen: list[int] = []
    monkeypatch.setattr(worker, "_start_up_frozen", False)
    monkeypatch.setattr(worker.gc, "freeze", lambda: frozen.append(1))
    worker.freeze_start_up_heap()
    worker.freeze_start_up_heap()
    assert frozen == [1]


def test_a_worker_only_process_raises_the_young_threshold_and_keeps_the_older_ones() -> None:
    """`q2c worker` collects the young generation less often; a higher threshold set before
    is kept, and the older generations' ratios are not touched."""
    import gc

    from quote2cash.engine import worker

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        worker.raise_worker_gc_threshold()
        assert gc.get_threshold() == (worker.WORKER_GC_GEN0, 11, 12)
        gc.set_threshold(50_000, 11, 12)
        worker.raise_worker_gc_threshold()
        assert gc.get_threshold() == (50_000, 11, 12)
    finally:
        gc.set_threshold(*before)
