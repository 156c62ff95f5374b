"""Failure isolation per target system: budgets (rate, day, concurrency), breaker, pauses.

A paused system, an open breaker or a spent budget does not fail work: it holds it in order
(``SystemUnavailable``) and the subject resumes by itself when the system is available again.
A call passes the gate with one synchronous check (``SystemGates.enter``) in the common case.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from quote2cash.engine.budgets import (
    Budget,
    BudgetBackend,
    BudgetLane,
    backend_for,
    background,
)
from quote2cash.engine.budgets_memory import MemoryBudgets
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


@dataclass(eq=False)
class GatePass:
    """What one step name goes through: its system's breaker and budget lanes (made once per
    process and name, so the common path allocates nothing)."""

    system: str
    operation: str
    breaker: CircuitBreaker
    lanes: tuple[BudgetLane, ...]
    rated: bool
    ok_labels: tuple[str, str, str]
    """The labels of a call through it that succeeds (metrics), worked out once."""


class SystemGates:
    """All systems' gates for one worker process; pauses are read from the store.

    With ``engine`` set, every gate check re-reads pauses and windows in force when its copy is
    older than ``max_age_seconds`` of real time, so a pause holds every process's calls within
    that bound, however long a batch runs. Budgets from systems.yaml (``configure_budgets``) are
    shared through the store's budget backend; ``SystemLimits`` are this process's own."""

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
        self._breakers: dict[str, CircuitBreaker] = {}
        self._pauses: dict[str, _Pause] = {}
        self._refreshed: datetime | None = None
        self._local = MemoryBudgets()
        self._process_lanes: dict[str, BudgetLane] = {}
        self._budgets: tuple[Budget, ...] = ()
        self._shared_lanes: dict[str, BudgetLane] = {}
        self._passes: dict[str, GatePass] = {}
        self._usage_noted: dict[str, float] = {}
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _GATES.add(self)

    def limits_for(self, system: str) -> SystemLimits:
        return self.limits.get(system) or self.limits.get("*") or SystemLimits()

    def configure_budgets(
        self, budgets: Iterable[Budget], backend: BudgetBackend | None = None
    ) -> None:
        """Use ``budgets`` (systems.yaml) from now on, kept in ``backend`` (default: the store)."""
        self._budgets = tuple(budgets)
        if backend is None:
            backend = backend_for(self.engine) if self.engine is not None else self._local
        backend.ensure(list(self._budgets))
        self._shared_lanes = {b.key: BudgetLane(b, backend, self.holder) for b in self._budgets}
        self._passes.clear()

    @property
    def budgets(self) -> tuple[Budget, ...]:
        return self._budgets

    def breaker(self, system: str) -> CircuitBreaker:
        if system not in self._breakers:
            lim = self.limits_for(system)
            self._breakers[system] = CircuitBreaker(
                lim.breaker_threshold, lim.breaker_reset_seconds
            )
        return self._breakers[system]

    def gate_pass(self, system: str, name: str) -> GatePass:
        """The (cached) pass for step ``name``: the system's own limits, then every configured
        budget of the system whose operations match the step's operation."""
        p = self._passes.get(name)
        if p is not None and p.system == system:
            return p
        operation = name.split(".")[1] if name.startswith(system + ".") else name
        lanes = [self._process_lane(system)]
        lanes += [
            self._shared_lanes[b.key]
            for b in self._budgets
            if b.system == system and b.matches(operation)
        ]
        p = GatePass(
            system,
            name,
            self.breaker(system),
            tuple(lanes),
            any(lane.budget.rate is not None for lane in lanes),
            metrics.call_labels(system, name, "ok"),
        )
        self._passes[name] = p
        metrics.breaker_changed(system, p.breaker.state(self.clock.now()))
        return p

    def _process_lane(self, system: str) -> BudgetLane:
        lane = self._process_lanes.get(system)
        if lane is None:
            lim = self.limits_for(system)
            budget = Budget(
                system,
                "process",
                rate=lim.rate,
                burst=lim.burst,
                concurrency=lim.max_concurrency,
            )
            lane = self._process_lanes[system] = BudgetLane(budget, self._local, self.holder)
        return lane

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
        pause = self._pauses.get(system)
        if pause is not None:
            until = pause.until.timestamp() if pause.until else None
            raise SystemUnavailable(system, pause.reason, until=until)
        breaker = self.breaker(system)
        if breaker.opened_at is not None and breaker.state(self.clock.now()) == "open":
            until = (breaker.opened_at + breaker.reset).timestamp()
            raise SystemUnavailable(system, "circuit breaker open", until=until)

    def enter(self, system: str, name: str) -> GatePass | None:
        """The one synchronous check of a call: pause, breaker, and every budget's local lease.

        Returns the pass when the call may start now (then ``leave`` it); None when it must wait
        (``enter_waiting``); raises ``SystemUnavailable`` when its work must be held."""
        p = self.gate_pass(system, name)
        try:
            self.check(system)
        except SystemUnavailable:
            metrics.call_finished(system, name, "unavailable", 0.0)
            raise
        if p.breaker.opened_at is not None:
            return None
        now = time.monotonic()
        for lane in p.lanes:
            if not lane.ready(now):
                return None
        for lane in p.lanes:
            lane.take()
        if p.rated:
            metrics.rate_limited(system, 0.0)
        return p

    async def enter_waiting(self, system: str, name: str) -> GatePass:
        """The slow path: a half-open breaker's probe, a lease to fetch, a token or slot to wait."""
        p = self.gate_pass(system, name)
        taken: list[BudgetLane] = []
        waited = time.monotonic()
        try:
            self.check(system)
            allowed, retry_at = p.breaker.allow(self.clock.now())
            if not allowed:
                until = retry_at.timestamp() if retry_at else None
                raise SystemUnavailable(system, "circuit breaker open", until=until)
            for lane in p.lanes:
                if lane.ready(time.monotonic()):
                    lane.take()
                else:
                    await lane.acquire(self.sleep)
                taken.append(lane)
            self.check(system)  # again: a pause may have come while this call waited
        except SystemUnavailable:
            for lane in taken:
                lane.release()
            metrics.call_finished(system, name, "unavailable", 0.0)
            raise
        if p.rated:
            metrics.rate_limited(system, time.monotonic() - waited)
        return p

    def leave(self, p: GatePass, error: BaseException | None, started: float) -> None:
        """A call through ``p`` ended (``error`` None when it succeeded): slots back, breaker
        told, and a 429/503 with Retry-After holds the call's budgets in every process."""
        for lane in p.lanes:
            lane.release()
        breaker = p.breaker
        if error is None:
            if breaker.failures or breaker.opened_at is not None:
                breaker.success()
                metrics.breaker_changed(p.system, "closed")
            metrics.call_succeeded(p.ok_labels, started)
            return
        if isinstance(error, TransientError):
            if error.throttled and error.retry_after:
                for lane in p.lanes:
                    lane.hold_for(error.retry_after)
            breaker.failure(self.clock.now())
            metrics.call_finished(p.system, p.operation, "transient", started)
            metrics.breaker_changed(p.system, breaker.state(self.clock.now()))
            return
        if isinstance(error, Exception):
            breaker.success()  # the system answered; the failure is not its availability
            metrics.call_finished(p.system, p.operation, _outcome_of(error), started)
            metrics.breaker_changed(p.system, "closed")
        elif breaker.probing:
            breaker.probing = False  # cancelled: the probe did not happen

    async def further_request(self, p: GatePass) -> None:
        """A further request of a call that went through ``p`` (its first was paid at the
        gate): one more token from each of its rate and day budgets, waiting as the gate would;
        its concurrency slots are held already."""
        now = time.monotonic()
        for lane in p.lanes:
            if lane.budget.rate is None and lane.budget.per_day is None:
                continue
            if lane.ready(now, slot=False):
                lane.take(slot=False)
            else:
                await lane.acquire(self.sleep, slot=False)
                now = time.monotonic()

    @asynccontextmanager
    async def call(self, system: str, operation: str = "") -> AsyncIterator[None]:
        """One request to ``system`` (for callers outside a step): the same gate as a step's;
        ``operation`` (the step's name) labels its metrics and picks its budgets."""
        name = operation or system
        p = self.enter(system, name) or await self.enter_waiting(system, name)
        started = metrics.now()
        token = call_in_progress(self, p)  # its further requests take tokens too
        try:
            yield
        except BaseException as exc:
            self.leave(p, exc, started)
            raise
        finally:
            reset_call(token)
        self.leave(p, None, started)

    def note_usage(self, system: str, used: int, limit: int) -> None:
        """The system reported its day usage (``Sforce-Limit-Info``): every process's day budget
        of ``system`` counts at least ``used`` (written at most every USAGE_NOTE_SECONDS)."""
        now = time.monotonic()
        for b in self._budgets:
            if b.system != system or b.per_day is None:
                continue
            if now - self._usage_noted.get(b.key, float("-inf")) < USAGE_NOTE_SECONDS:
                continue
            self._usage_noted[b.key] = now
            lane = self._shared_lanes[b.key]
            background(lane.backend.note_usage, b, used + max(0, b.per_day - limit))

    def status(self) -> dict[str, str]:
        now = self.clock.now()
        out = {name: f"paused ({p.reason})" for name, p in self._pauses.items()}
        for name, br in self._breakers.items():
            out.setdefault(name, f"breaker {br.state(now)}")
        return out


USAGE_NOTE_SECONDS = 5.0
_GATES: weakref.WeakSet[SystemGates] = weakref.WeakSet()


@dataclass(eq=False)
class CallInProgress:
    """The gated call (a step) running in this task: its gates, its pass, its requests so far."""

    gates: SystemGates
    gate: GatePass
    requests: int = 0


_CALL: ContextVar[CallInProgress | None] = ContextVar("q2c_call_in_progress", default=None)


def call_in_progress(gates: SystemGates, gate: GatePass) -> Token[CallInProgress | None]:
    """Mark the gated call this task runs now (``reset_call`` with the token when it ends)."""
    return _CALL.set(CallInProgress(gates, gate))


def reset_call(token: Token[CallInProgress | None]) -> None:
    _CALL.reset(token)


async def request_token(system: str | None) -> None:
    """For connectors, before each HTTP request to ``system``: the step's gate paid for its
    first request; each further one takes a token of the step's budgets too, so a budget holds
    per request sent, not per step (Stripe counts requests). Outside a gated step of ``system``
    (polling, tools) nothing is taken."""
    current = _CALL.get()
    if current is None or system is None or current.gate.system != system:
        return
    current.requests += 1
    if current.requests > 1:
        await current.gates.further_request(current.gate)


def report_usage(system: str | None, used: int, limit: int) -> None:
    """For connectors: ``system``'s own count of its day allocation (e.g. Salesforce's
    ``Sforce-Limit-Info: api-usage=N/M``) reaches every gate of this process."""
    if system is None:
        return
    for gates in list(_GATES):
        gates.note_usage(system, used, limit)


def _outcome_of(exc: Exception) -> str:
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, SystemUnavailable):
        return "unavailable"
    return "transient"  # the worker retries any other error as transient
