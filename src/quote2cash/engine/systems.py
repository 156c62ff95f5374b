"""Failure isolation per target system: rate limit, concurrency cap, circuit breaker, pauses.

A paused system or an open breaker does not fail work: it holds it in order (``SystemUnavailable``)
and the subject resumes by itself when the system is available again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from quote2cash.engine.clock import Clock
from quote2cash.engine.errors import PermanentError, SystemUnavailable, TransientError
from quote2cash.observability import metrics
from quote2cash.store.schema import maintenance_windows, systems

Sleep = Callable[[float], Awaitable[None]]
GATE_MAX_AGE_SECONDS = 0.5
"""A gated call never starts on pause state older than this (DESIGN 4.6: within one second)."""


@dataclass(frozen=True)
class SystemLimits:
    """Per-system limits: ``rate`` requests/second (None = unlimited), ``burst`` tokens."""

    rate: float | None = None
    burst: int = 10
    max_concurrency: int = 8
    breaker_threshold: int = 5
    breaker_reset_seconds: float = 30.0


class TokenBucket:
    """Reservation-style token bucket: ``reserve`` says how long to wait for the next slot."""

    def __init__(self, rate: float, burst: int, now: datetime) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("TokenBucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def reserve(self, now: datetime) -> float:
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class CircuitBreaker:
    """Opens after ``threshold`` consecutive transient failures; lets one probe through later."""

    def __init__(self, threshold: int, reset_seconds: float) -> None:
        self.threshold = threshold
        self.reset = timedelta(seconds=reset_seconds)
        self.failures = 0
        self.opened_at: datetime | None = None
        self.probing = False

    def state(self, now: datetime) -> str:
        if self.opened_at is None:
            return "closed"
        if now - self.opened_at >= self.reset:
            return "half_open"
        return "open"

    def allow(self, now: datetime) -> tuple[bool, datetime | None]:
        """(allowed, retry at): a half-open breaker admits exactly one probe at a time."""
        state = self.state(now)
        if state == "closed":
            return True, None
        if state == "half_open" and not self.probing:
            self.probing = True
            return True, None
        assert self.opened_at is not None
        return False, max(now, self.opened_at + self.reset)

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def failure(self, now: datetime) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at = now
        self.probing = False


@dataclass
class _Pause:
    reason: str
    until: datetime | None


class SystemGates:
    """All systems' gates for one worker process; pauses are read from the store.

    With ``engine`` set, every gate check re-reads pauses and windows in force when its copy is
    older than ``max_age_seconds`` of real time, so a pause holds every process's calls within
    that bound, however long a batch runs."""

    def __init__(
        self,
        clock: Clock,
        limits: dict[str, SystemLimits] | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        refresh_seconds: float = 1.0,
        engine: Engine | None = None,
        max_age_seconds: float = GATE_MAX_AGE_SECONDS,
    ) -> None:
        self.clock = clock
        self.limits = limits or {}
        self.sleep = sleep
        self.refresh_every = timedelta(seconds=refresh_seconds)
        self.engine = engine
        self.max_age = max_age_seconds
        self._read_at = float("-inf")
        self._buckets: dict[str, TokenBucket] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._pauses: dict[str, _Pause] = {}
        self._refreshed: datetime | None = None

    def limits_for(self, system: str) -> SystemLimits:
        return self.limits.get(system) or self.limits.get("*") or SystemLimits()

    def breaker(self, system: str) -> CircuitBreaker:
        if system not in self._breakers:
            lim = self.limits_for(system)
            self._breakers[system] = CircuitBreaker(
                lim.breaker_threshold, lim.breaker_reset_seconds
            )
        return self._breakers[system]

    def refresh(self, engine: Engine, *, force: bool = False) -> None:
        """Reload manual pauses and maintenance windows in force now."""
        now = self.clock.now()
        started = time.monotonic()
        fresh = started - self._read_at < self.max_age
        if not force and fresh and self._refreshed and now - self._refreshed < self.refresh_every:
            return
        pauses: dict[str, _Pause] = {}
        with engine.connect() as conn:
            for row in conn.execute(select(systems).where(systems.c.paused.is_(True))):
                pauses[row.name] = _Pause(f"paused by {row.changed_by}: {row.reason}", None)
            windows = conn.execute(
                select(maintenance_windows).where(
                    maintenance_windows.c.starts_at <= now, maintenance_windows.c.ends_at > now
                )
            )
            for w in windows:
                if w.system not in pauses:
                    pauses[w.system] = _Pause(f"maintenance window: {w.reason}", w.ends_at)
        self._pauses = pauses
        self._refreshed = now
        self._read_at = started

    def check(self, system: str) -> None:
        """Raise ``SystemUnavailable`` if work for ``system`` must wait now."""
        if self.engine is not None and time.monotonic() - self._read_at >= self.max_age:
            self.refresh(self.engine, force=True)
        now = self.clock.now()
        pause = self._pauses.get(system)
        if pause is not None:
            until = pause.until.timestamp() if pause.until else None
            raise SystemUnavailable(system, pause.reason, until=until)
        state = self.breaker(system).state(now)
        if state == "open":
            opened = self.breaker(system).opened_at
            assert opened is not None
            until = (opened + self.breaker(system).reset).timestamp()
            raise SystemUnavailable(system, "circuit breaker open", until=until)

    @asynccontextmanager
    async def call(self, system: str, operation: str = "") -> AsyncIterator[None]:
        """One request to ``system``: pause and breaker checked, rate and concurrency enforced;
        ``operation`` (the step's name) labels its metrics."""
        try:
            self.check(system)
            breaker = self.breaker(system)
            allowed, retry_at = breaker.allow(self.clock.now())
            if not allowed:
                until = retry_at.timestamp() if retry_at else None
                raise SystemUnavailable(system, "circuit breaker open", until=until)
        except SystemUnavailable:
            metrics.call_finished(system, operation, "unavailable", 0.0)
            raise
        lim = self.limits_for(system)
        if lim.rate is not None:
            bucket = self._buckets.get(system)
            if bucket is None:
                bucket = self._buckets[system] = TokenBucket(lim.rate, lim.burst, self.clock.now())
            wait = bucket.reserve(self.clock.now())
            if wait > 0:
                await self.sleep(wait)
            metrics.rate_limited(system, wait)
        sem = self._semaphores.get(system)
        if sem is None:
            sem = self._semaphores[system] = asyncio.Semaphore(lim.max_concurrency)
        async with sem:
            try:  # again: a pause may have come while this call waited for its turn or its rate
                self.check(system)
            except SystemUnavailable:
                metrics.call_finished(system, operation, "unavailable", 0.0)
                raise
            started = metrics.now()
            try:
                yield
            except TransientError:
                breaker.failure(self.clock.now())
                metrics.call_finished(system, operation, "transient", started)
                metrics.breaker_changed(system, breaker.state(self.clock.now()))
                raise
            except Exception as exc:
                breaker.success()  # the system answered; the failure is not its availability
                outcome = _outcome_of(exc)
                metrics.call_finished(system, operation, outcome, started)
                metrics.breaker_changed(system, "closed")
                raise
            breaker.success()
            metrics.call_finished(system, operation, "ok", started)
            metrics.breaker_changed(system, "closed")

    def status(self) -> dict[str, str]:
        now = self.clock.now()
        out = {name: f"paused ({p.reason})" for name, p in self._pauses.items()}
        for name, br in self._breakers.items():
            out.setdefault(name, f"breaker {br.state(now)}")
        return out


def _outcome_of(exc: Exception) -> str:
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, SystemUnavailable):
        return "unavailable"
    return "transient"  # the worker retries any other error as transient
