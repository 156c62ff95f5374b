"""The engine benchmark's workload: its events, its step-recording handlers, and a history of
already processed events built fast on the server, so reads that scan old rows show up."""

from __future__ import annotations

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime

EVENT_TYPE = "bench.item.changed"


def make_events(n: int, subjects: int) -> list[Event]:
    return [
        new_event(EVENT_TYPE, f"subject-{i % subjects}", {"n": i, "amount": "12.50"})
        for i in range(n)
    ]


def step_registry(steps: int, systems: tuple[str, ...]) -> Registry:
    """A handler recording ``steps`` gated steps per event (0: a no-op that records nothing).

    Each step's action is instant, so the figure is the engine's own cost of recording it: the
    gate, the step row with its idempotency key, and the step's audit entry.
    """
    registry = Registry()
    names = [f"{systems[i % len(systems)]}.record_{i}" for i in range(steps)]

    @registry.on(EVENT_TYPE)
    async def handle(ctx: HandlerContext, event: Event) -> None:
        for name in names:
            await ctx.step(name, lambda key: key)

    return registry


def count_rows(runtime: Runtime, table: str) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def seed_history(runtime: Runtime, events: int, subjects: int) -> None:
    """``events`` processed events across the benchmark's own subjects, as a store that ran them
    holds them: the event row, its dispatch row (done), one step row and one audit entry each
    (on a chain of its own, so the measured workers' chains start fresh), written by the server
    in batches of 100,000, then VACUUM ANALYZE (PostgreSQL only)."""
    if runtime.engine.dialect.name != "postgresql":
        raise ValueError("history is seeded on PostgreSQL only")
    batch = 100_000
    with runtime.engine.begin() as conn:
        for first in range(0, events, batch):
            last = min(events, first + batch) - 1
            conn.exec_driver_sql(
                "INSERT INTO events (event_id, source, type, subject, time, correlation_id, "
                "sequence, schema_version, data, recorded_at) "
                "SELECT md5(g::text), 'bench-history', %(type)s, 'subject-' || (g %% %(s)s), "
                "now(), md5('c' || g::text), g / %(s)s + 1, 1, "
                '\'{"n": \' || g || \', "amount": "12.50"}\', now() '
                "FROM generate_series(%(first)s, %(last)s) AS g",
                {"type": EVENT_TYPE, "s": subjects, "first": first, "last": last},
            )
        conn.exec_driver_sql(
            "INSERT INTO event_state (pos, subject, status, attempts, processed_at) "
            "SELECT pos, subject, 'done', 1, now() FROM events WHERE source = 'bench-history'"
        )
        conn.exec_driver_sql(
            "INSERT INTO steps (event_pos, name, idempotency_key, system, result, completed_at) "
            "SELECT pos, 'billing.record_0', md5(event_id), 'billing', '\"done\"', now() "
            "FROM events WHERE source = 'bench-history'"
        )
        conn.exec_driver_sql(
            "INSERT INTO audit_log (chain, seq, at, actor, action, entity, correlation_id, "
            "details, prev_hash, hash, key_id) "
            "SELECT 'bench-history', pos, now(), 'engine', 'step.completed', subject, "
            "correlation_id, '{\"step\": \"billing.record_0\"}', md5('p' || pos) || "
            "md5('q' || pos), md5('h' || pos) || md5('i' || pos), 'bench' "
            "FROM events WHERE source = 'bench-history'"
        )
        conn.exec_driver_sql(
            "INSERT INTO subjects (subject, last_sequence, pending) "
            "SELECT subject, max(sequence), 0 FROM events GROUP BY subject"
        )
    with runtime.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


def history_events(runtime: Runtime) -> int:
    """How many seeded history events the store holds (a copy of the template has them)."""
    with runtime.engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM events WHERE source = 'bench-history'"
            ).scalar_one()
        )
