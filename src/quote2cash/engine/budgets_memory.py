"""Budgets in one process's memory: the embedded SQLite shape, where one process calls out."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from quote2cash.engine.budgets import BucketState, Budget, Grant, reserve
from quote2cash.engine.clock import Clock, SystemClock


class MemoryBudgets:
    """Each budget's bucket in a dict, under a lock (reservations come from executor threads)."""

    shared = False

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._state: dict[str, BucketState] = {}
        self._lock = threading.Lock()

    def _bucket(self, budget: Budget) -> BucketState:
        state = self._state.get(budget.key)
        if state is None:
            state = self._state[budget.key] = BucketState(float(budget.burst), self.clock.now())
        return state

    def ensure(self, budgets: list[Budget]) -> None:
        with self._lock:
            for budget in budgets:
                self._bucket(budget)

    def reserve(self, budget: Budget, n: int) -> Grant:
        with self._lock:
            return reserve(self._bucket(budget), budget, n, self.clock.now())

    def hold(self, budget: Budget, seconds: float) -> None:
        with self._lock:
            state = self._bucket(budget)
            until = self.clock.now() + timedelta(seconds=seconds)
            if state.blocked_until is None or state.blocked_until < until:
                state.blocked_until = until

    def note_usage(self, budget: Budget, used: int) -> None:
        with self._lock:
            state = self._bucket(budget)
            if state.day_started is None:
                state.day_started = self.clock.now()
            state.day_used = max(state.day_used, used)

    def take_slot(self, budget: Budget, holder: str) -> int | None:
        return None  # one process: the lane counts its own calls

    def give_slot(self, budget: Budget, holder: str, slot: int) -> None:
        return None

    def renew_slots(self, budget: Budget, holder: str, slots: list[int]) -> None:
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "budget": key,
                    "tokens": state.tokens,
                    "updated_at": state.updated,
                    "day_used": state.day_used,
                    "day_started": state.day_started,
                    "blocked_until": state.blocked_until,
                    "slots_held": None,
                    "slots": None,
                }
                for key, state in sorted(self._state.items())
            ]
