"""API budgets per system and endpoint class: a rate with burst, a day allocation, a concurrency
cap, shared by every hub process of a deployment (DESIGN 4.6).

A budget's state lives in a ``BudgetBackend`` (in-process for the embedded SQLite shape,
``budgets_postgres`` for many processes). A process takes tokens in small leases, so the common
call checks only local state (``BudgetLane.ready``); a lease's tokens each carry the time the
shared bucket made them valid, so processes together never spend faster than the bucket allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from quote2cash.engine.errors import SystemUnavailable

LEASE_SECONDS_OF_RATE = 0.05
"""A lease holds about this many seconds of a budget's rate (at least one token)."""
LEASE_GRACE_SECONDS = 0.1
"""A leased token not spent within this long of its valid time is dropped, never saved up."""
MAX_SLEEP_SECONDS = 2.0
"""A call waits in place for at most this long; a longer wait holds the work (SystemUnavailable)."""
SLOT_ROTATE_SECONDS = 1.0
"""A shared concurrency slot passes from call to call in one process for at most this long."""
SLOT_POLL_SECONDS = 0.05
DAY = timedelta(hours=24)


class BudgetConfigError(ValueError):
    """A budget in systems.yaml is malformed; the message names file, system, budget and field."""


@dataclass(frozen=True)
class Budget:
    """One budget of ``system``: ``rate`` requests/s with ``burst``, ``per_day`` calls per 24 h,
    ``concurrency`` calls at once; it covers the step operations matching ``operations`` (all
    when empty). A killed process's concurrency slots come back after ``slot_lease_seconds``."""

    system: str
    name: str
    rate: float | None = None
    burst: int = 1
    per_day: int | None = None
    concurrency: int | None = None
    operations: tuple[str, ...] = ()
    slot_lease_seconds: float = 60.0

    @property
    def key(self) -> str:
        return f"{self.system}:{self.name}"

    def matches(self, operation: str) -> bool:
        return not self.operations or any(
            fnmatch.fnmatchcase(operation, p) for p in self.operations
        )

    @property
    def lease_size(self) -> int:
        if self.rate is None:
            return 20 if self.per_day is None else max(1, min(20, self.per_day // 1000))
        return max(1, min(self.burst, int(self.rate * LEASE_SECONDS_OF_RATE)))


_FIELDS = {"rate", "burst", "per_day", "concurrency", "operations", "slot_lease_seconds"}


def budgets_from_mapping(system: str, data: Any, *, source: str) -> tuple[Budget, ...]:
    """One system's ``budgets:`` in systems.yaml, validated; errors name the budget and field."""
    where = f"{source}: {system}.budgets"
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise BudgetConfigError(f"{where}: expected a mapping of budget names to settings")
    out = []
    for name, spec in data.items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise BudgetConfigError(f"{where}: budget name {name!r} must be letters, digits, _")
        if not isinstance(spec, dict):
            raise BudgetConfigError(f"{here}: expected a mapping with rate, burst, per_day, ...")
        unknown = sorted(set(spec) - _FIELDS)
        if unknown:
            raise BudgetConfigError(
                f"{here}: unknown field(s) {unknown}; expected {sorted(_FIELDS)}"
            )
        rate = _number(spec, "rate", here, positive=True)
        burst = _integer(spec, "burst", here)
        per_day = _integer(spec, "per_day", here)
        concurrency = _integer(spec, "concurrency", here)
        lease = _number(spec, "slot_lease_seconds", here, positive=True)
        if rate is None and per_day is None and concurrency is None:
            raise BudgetConfigError(f"{here}: give at least one of rate, per_day, concurrency")
        if burst is not None and rate is None:
            raise BudgetConfigError(f"{here}.burst: a burst needs a rate")
        ops = spec.get("operations", [])
        if isinstance(ops, str):
            ops = [ops]
        if not isinstance(ops, list) or not all(isinstance(o, str) and o for o in ops):
            raise BudgetConfigError(
                f"{here}.operations: expected a list of operation patterns (e.g. 'get_*')"
            )
        out.append(
            Budget(
                system,
                name,
                rate=rate,
                burst=burst if burst is not None else max(1, math.ceil(rate or 1)),
                per_day=per_day,
                concurrency=concurrency,
                operations=tuple(ops),
                slot_lease_seconds=lease if lease is not None else 60.0,
            )
        )
    return tuple(out)


def _number(spec: dict[str, Any], key: str, where: str, *, positive: bool) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BudgetConfigError(f"{where}.{key}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise BudgetConfigError(f"{where}.{key}: expected a number > 0, got {value!r}")
    return float(value)


def _integer(spec: dict[str, Any], key: str, where: str) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BudgetConfigError(f"{where}.{key}: expected a whole number >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class Grant:
    """A backend's answer to a reservation: ``count`` tokens, token i (1-based) valid
    ``max(0, (i - tokens) / rate)`` s from now; or none, held ``hold_seconds`` for ``reason``."""

    count: int
    tokens: float = math.inf
    rate: float = 1.0
    hold_seconds: float = 0.0
    reason: str = ""


@dataclass
class BucketState:
    """A budget's shared state, the same columns on every backend (``budget_buckets``)."""

    tokens: float
    updated: datetime
    blocked_until: datetime | None = None
    day_started: datetime | None = None
    day_used: int = 0


def reserve(state: BucketState, budget: Budget, n: int, now: datetime) -> Grant:
    """Take up to ``n`` tokens from ``state`` at ``now`` (reservation style: the bucket may go
    into debt, the grant says when each token becomes valid). The arithmetic every backend does."""
    if state.blocked_until is not None and state.blocked_until > now:
        wait = (state.blocked_until - now).total_seconds()
        return Grant(0, hold_seconds=wait, reason="the system asked to wait (Retry-After)")
    if budget.per_day is not None:
        if state.day_started is None or now - state.day_started >= DAY:
            state.day_started, state.day_used = now, 0
        left = budget.per_day - state.day_used
        if left <= 0:
            wait = (state.day_started + DAY - now).total_seconds()
            return Grant(0, hold_seconds=wait, reason=f"daily allocation of {budget.per_day} used")
        n = min(n, left)
        state.day_used += n
    if budget.rate is None:
        return Grant(n)
    elapsed = max(0.0, (now - state.updated).total_seconds())
    tokens = min(float(budget.burst), state.tokens + elapsed * budget.rate)
    state.tokens = tokens - n
    state.updated = now
    return Grant(n, tokens, budget.rate)


class BudgetBackend(Protocol):
    """Where budgets' shared state lives: one process's memory, or the PostgreSQL store.

    ``shared`` says whether concurrency slots are leased from it (else a process counts its own)."""

    shared: bool

    def ensure(self, budgets: list[Budget]) -> None: ...

    def reserve(self, budget: Budget, n: int) -> Grant: ...

    def hold(self, budget: Budget, seconds: float) -> None:
        """No process takes tokens for ``seconds`` (a 429's Retry-After)."""

    def note_usage(self, budget: Budget, used: int) -> None:
        """The system says ``used`` calls of the day allocation are spent (at least)."""

    def take_slot(self, budget: Budget, holder: str) -> int | None: ...

    def give_slot(self, budget: Budget, holder: str, slot: int) -> None: ...

    def renew_slots(self, budget: Budget, holder: str, slots: list[int]) -> None:
        """Extend the leases of slots this process still holds (calls longer than a lease)."""

    def describe(self) -> list[dict[str, Any]]:
        """Every budget's state as it stands (``q2c systems budgets``)."""
        ...


@dataclass
class BudgetLane:
    """One budget as one process sees it: its current lease of tokens and concurrency slots.

    ``ready``/``take`` are the synchronous common path; ``acquire`` waits (sleep, backend round
    trip) or holds the work when the wait is long."""

    budget: Budget
    backend: BudgetBackend
    holder: str
    count: int = 0
    used: int = 0
    tokens: float = math.inf
    interval: float = 0.0
    got_at: float = 0.0
    blocked_until: float = 0.0
    blocked_reason: str = ""
    in_use: int = 0
    slots: deque[tuple[int, float]] = field(default_factory=deque)
    waiting: int = 0
    _lock: asyncio.Lock | None = None
    _freed: asyncio.Event | None = None
    _renewer: asyncio.Future[None] | None = None

    def ready(self, now: float, slot: bool = True) -> bool:
        """May a call start now on local state alone? (No I/O, no allocation.) ``slot`` False:
        a further request of a call that holds its slot already, so only a token is needed."""
        if now < self.blocked_until:
            return False
        b = self.budget
        if (
            slot
            and b.concurrency is not None
            and self.in_use >= (len(self.slots) if self._shared_slots else b.concurrency)
        ):
            return False
        if b.rate is None and b.per_day is None:
            return True
        if self.used >= self.count:
            return False
        valid = self.got_at + max(0.0, (self.used + 1 - self.tokens) * self.interval)
        if valid > now:
            return False
        if b.rate is not None and valid + LEASE_GRACE_SECONDS < now:
            self.count = self.used  # a stale lease would let this process burst past the rate
            return False
        return True

    def take(self, slot: bool = True) -> None:
        b = self.budget
        if b.rate is not None or b.per_day is not None:
            self.used += 1
        if slot and b.concurrency is not None:
            self.in_use += 1

    @property
    def _shared_slots(self) -> bool:
        return self.backend.shared

    async def acquire(self, sleep: Any = asyncio.sleep, slot: bool = True) -> None:
        """Wait for a token and a slot (``slot`` False: a token only): sleep up to
        MAX_SLEEP_SECONDS, else SystemUnavailable."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        self.waiting += 1
        try:
            async with self._lock:
                await self._acquire(sleep, slot)
        except BaseException:
            self.waiting -= 1
            if not self.waiting:
                self._give_back_idle_slots()  # a slot taken for a call that will not happen
            raise
        self.waiting -= 1

    async def _acquire(self, sleep: Any, slot: bool) -> None:
        b = self.budget
        while True:
            now = time.monotonic()
            if now < self.blocked_until:
                self._hold(self.blocked_until - now, self.blocked_reason)
            if slot and b.concurrency is not None and not self._slot_free():
                await self._wait_for_slot(sleep)
                continue
            if b.rate is None and b.per_day is None:
                break
            if self.used >= self.count or (
                b.rate is not None
                and self.got_at
                + max(0.0, (self.used + 1 - self.tokens) * self.interval)
                + LEASE_GRACE_SECONDS
                < now
            ):
                grant = await asyncio.to_thread(self.backend.reserve, b, self._lease_wanted())
                if grant.count == 0:
                    self.blocked_until = time.monotonic() + grant.hold_seconds
                    self.blocked_reason = grant.reason
                    self._hold(grant.hold_seconds, grant.reason)
                self.count, self.used = grant.count, 0
                self.tokens, self.interval = grant.tokens, 1.0 / grant.rate
                self.got_at = time.monotonic()
                continue
            valid = self.got_at + max(0.0, (self.used + 1 - self.tokens) * self.interval)
            if valid > now:
                if valid - now > MAX_SLEEP_SECONDS:
                    self._hold(valid - now, "over its budget")
                await sleep(valid - now)
                continue
            break
        self.take(slot)

    def _lease_wanted(self) -> int:
        """Tokens to reserve: a lease, or one for each call waiting here (up to the burst), so a
        queue of calls costs the shared bucket one round trip, not one each. Every token keeps
        the time the bucket makes it valid, so a bigger lease never spends faster than the rate."""
        b = self.budget
        if b.rate is None:
            return b.lease_size
        return max(b.lease_size, min(b.burst, self.waiting))

    def _slot_free(self) -> bool:
        cap = len(self.slots) if self._shared_slots else self.budget.concurrency
        return self.in_use < (cap or 0)

    async def _wait_for_slot(self, sleep: Any) -> None:
        if self._shared_slots and len(self.slots) < (self.budget.concurrency or 0):
            slot = await asyncio.to_thread(self.backend.take_slot, self.budget, self.holder)
            if slot is not None:
                self.slots.append((slot, time.monotonic()))
                if self._renewer is None or self._renewer.done():
                    self._renewer = asyncio.ensure_future(self._renew())
                return
        if self._freed is None:
            self._freed = asyncio.Event()
        self._freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._freed.wait(), SLOT_POLL_SECONDS)

    async def _renew(self) -> None:
        """While this process holds slots, renew their leases every third of a lease: a slot is
        lost only when its holder stops renewing (it died or hangs)."""
        every = self.budget.slot_lease_seconds / 3
        while self.slots:
            await asyncio.sleep(every)
            held = [slot for slot, _ in self.slots]
            if held:
                await asyncio.to_thread(self.backend.renew_slots, self.budget, self.holder, held)

    def _give_back_idle_slots(self) -> None:
        while self._shared_slots and len(self.slots) > self.in_use:
            slot, _ = self.slots.pop()
            background(self.backend.give_slot, self.budget, self.holder, slot)

    def release(self) -> None:
        """A call ends: its slot goes to a waiting call here, or back to the deployment."""
        if self.budget.concurrency is None:
            return
        self.in_use -= 1
        if self._shared_slots and self.slots:
            slot, since = self.slots[0]
            if not self.waiting or time.monotonic() - since > SLOT_ROTATE_SECONDS:
                self.slots.popleft()
                background(self.backend.give_slot, self.budget, self.holder, slot)
        if self._freed is not None:
            self._freed.set()

    def hold_for(self, seconds: float) -> None:
        """The system said to wait (429/503 Retry-After): this process stops now, the others at
        their next lease."""
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)
        self.blocked_reason = "the system asked to wait (Retry-After)"
        self.count = self.used
        background(self.backend.hold, self.budget, seconds)

    def _hold(self, seconds: float, reason: str) -> None:
        until = time.time() + seconds
        raise SystemUnavailable(
            self.budget.system, f"budget {self.budget.name}: {reason}", until=until
        )


_tasks: set[asyncio.Future[Any]] = set()


def background(fn: Any, *args: Any) -> None:
    """Run a backend write off the event loop without waiting for it; without a loop, inline."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    fut = loop.run_in_executor(None, fn, *args)
    _tasks.add(fut)
    fut.add_done_callback(_tasks.discard)


def backend_for(engine: Engine) -> BudgetBackend:
    """The store's budget backend: rows in PostgreSQL, shared by every process; this process's
    memory on SQLite (the embedded shape has one process calling out)."""
    if engine.dialect.name == "postgresql":
        from quote2cash.engine.budgets_postgres import PostgresBudgets

        return PostgresBudgets(engine)
    from quote2cash.engine.budgets_memory import MemoryBudgets

    return MemoryBudgets()
