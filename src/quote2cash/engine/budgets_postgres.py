"""Budgets shared by every hub process on PostgreSQL: one row per budget, one statement each.

A reservation is one ``UPDATE ... RETURNING`` that refills the bucket from the database's own
clock, takes the lease and counts the day allocation, so processes on different hosts agree
without clock sync. Concurrency slots are rows leased with an expiry: a killed process's slots
are free again when their lease runs out.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine

from quote2cash.engine.budgets import Budget, Grant

_RESERVE = """
WITH cur AS (
    SELECT name, clock_timestamp() AS now,
        CASE WHEN %(per_day)s::bigint IS NOT NULL
              AND (day_started IS NULL OR clock_timestamp() - day_started >= interval '24 hours')
             THEN true ELSE false END AS new_day
    FROM budget_buckets WHERE name = %(name)s FOR UPDATE
), calc AS (
    SELECT b.name, cur.now, cur.new_day,
        b.blocked_until IS NOT NULL AND b.blocked_until > cur.now AS blocked,
        CASE WHEN cur.new_day THEN cur.now ELSE b.day_started END AS day_started,
        CASE WHEN cur.new_day THEN 0 ELSE b.day_used END AS day_used,
        LEAST(%(burst)s::float8,
              b.tokens + GREATEST(0, EXTRACT(EPOCH FROM cur.now - b.updated_at))
                         * COALESCE(%(rate)s::float8, 0)) AS refilled,
        b.blocked_until
    FROM budget_buckets b JOIN cur USING (name)
), grant_ AS (
    SELECT calc.*,
        CASE WHEN blocked THEN 0
             WHEN %(per_day)s::bigint IS NULL THEN %(n)s::bigint
             ELSE GREATEST(0, LEAST(%(n)s::bigint, %(per_day)s::bigint - day_used)) END AS n
    FROM calc
)
UPDATE budget_buckets b SET
    tokens = CASE WHEN %(rate)s::float8 IS NULL OR g.n = 0 THEN b.tokens ELSE g.refilled - g.n END,
    updated_at = CASE WHEN %(rate)s::float8 IS NULL OR g.n = 0 THEN b.updated_at ELSE g.now END,
    day_started = g.day_started,
    day_used = g.day_used + g.n
FROM grant_ g WHERE b.name = g.name
RETURNING g.n, g.refilled, g.blocked,
    EXTRACT(EPOCH FROM g.blocked_until - g.now) AS blocked_for,
    EXTRACT(EPOCH FROM g.day_started + interval '24 hours' - g.now) AS day_left
"""


class PostgresBudgets:
    """Budget rows in the store (migration 0018); every call is one short autocommit statement."""

    shared = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ensure(self, budgets: list[Budget]) -> None:
        """Create missing rows and the concurrency slots each cap needs (surplus slots go)."""
        with self.engine.begin() as conn:
            for b in budgets:
                conn.exec_driver_sql(
                    "INSERT INTO budget_buckets (name, tokens, updated_at, day_used) "
                    "VALUES (%s, %s, clock_timestamp(), 0) ON CONFLICT (name) DO NOTHING",
                    (b.key, float(b.burst)),
                )
                cap = b.concurrency or 0
                conn.exec_driver_sql(
                    "INSERT INTO budget_slots (budget, slot) SELECT %s, s "
                    "FROM generate_series(1, %s) AS s ON CONFLICT DO NOTHING",
                    (b.key, cap),
                )
                conn.exec_driver_sql(
                    "DELETE FROM budget_slots WHERE budget = %s AND slot > %s", (b.key, cap)
                )

    def reserve(self, budget: Budget, n: int) -> Grant:
        params = {
            "name": budget.key,
            "n": n,
            "rate": budget.rate,
            "burst": float(budget.burst),
            "per_day": budget.per_day,
        }
        with self.engine.begin() as conn:
            row = conn.exec_driver_sql(_RESERVE, params).one()
        count, refilled, blocked, blocked_for, day_left = row
        if blocked:
            return Grant(0, hold_seconds=max(0.0, float(blocked_for)), reason=_RETRY_AFTER)
        if count == 0:
            return Grant(
                0,
                hold_seconds=max(0.0, float(day_left)),
                reason=f"daily allocation of {budget.per_day} used",
            )
        if budget.rate is None:
            return Grant(int(count))
        return Grant(int(count), float(refilled), budget.rate)

    def hold(self, budget: Budget, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds <= 0:
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE budget_buckets SET blocked_until = GREATEST("
                "COALESCE(blocked_until, clock_timestamp()), "
                "clock_timestamp() + make_interval(secs => %s)) WHERE name = %s",
                (seconds, budget.key),
            )

    def note_usage(self, budget: Budget, used: int) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE budget_buckets SET day_used = GREATEST(day_used, %s), "
                "day_started = COALESCE(day_started, clock_timestamp()) WHERE name = %s",
                (used, budget.key),
            )

    def take_slot(self, budget: Budget, holder: str) -> int | None:
        with self.engine.begin() as conn:
            row = conn.exec_driver_sql(
                "UPDATE budget_slots SET holder = %s, "
                "expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE (budget, slot) = (SELECT budget, slot FROM budget_slots "
                "  WHERE budget = %s AND (holder IS NULL OR expires_at < clock_timestamp()) "
                "  ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING slot",
                (holder, budget.slot_lease_seconds, budget.key),
            ).first()
        return None if row is None else int(row[0])

    def give_slot(self, budget: Budget, holder: str, slot: int) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE budget_slots SET holder = NULL, expires_at = NULL "
                "WHERE budget = %s AND slot = %s AND holder = %s",
                (budget.key, slot, holder),
            )

    def renew_slots(self, budget: Budget, holder: str, slots: list[int]) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE budget_slots SET "
                "expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE budget = %s AND holder = %s AND slot = ANY(%s)",
                (budget.slot_lease_seconds, budget.key, holder, slots),
            )

    def describe(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT b.name, b.tokens, b.updated_at, b.day_used, b.day_started, "
                "b.blocked_until, "
                "count(s.slot) FILTER (WHERE s.holder IS NOT NULL "
                "  AND s.expires_at >= clock_timestamp()), count(s.slot) "
                "FROM budget_buckets b LEFT JOIN budget_slots s ON s.budget = b.name "
                "GROUP BY b.name ORDER BY b.name"
            ).all()
        keys = ("budget", "tokens", "updated_at", "day_used", "day_started", "blocked_until")
        return [
            {**dict(zip(keys, row[:6], strict=True)), "slots_held": row[6], "slots": row[7]}
            for row in rows
        ]


_RETRY_AFTER = "the system asked to wait (Retry-After)"
