"""A store written before 0017 (dispatch state in the event row) keeps every event's state after
the upgrade: the rows move to ``event_state``, readers and the worker see the same, and a
downgrade puts them back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import inspect, select, text

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.exceptions import list_exceptions
from quote2cash.engine.queries import find_event, list_events, status_counts
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.db import _alembic_config, migrate, open_engine
from quote2cash.store.schema import event_state

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
# (subject, sequence, status, attempts, category, last_error, processed)
OLD_ROWS = [
    ("deal-a", 1, "done", 1, None, None, True),
    ("deal-a", 2, "pending", 0, None, None, False),
    ("deal-b", 1, "exception", 1, "data", "PermanentError: no price for SKU-9", False),
    ("deal-c", 1, "pending", 2, None, "TransientError: 503 from billing", False),
    ("deal-d", 1, "resolved", 1, "mapping", "fixed at the source", True),
]


def write_old_store(url: str) -> None:
    """Schema 0016 and its rows as the 0016 code wrote them: state inside ``events``."""
    engine = open_engine(url)
    migrate(engine, "0016")
    with engine.begin() as conn:
        for i, (subject, seq, status, attempts, category, error, processed) in enumerate(OLD_ROWS):
            conn.execute(
                text(
                    "INSERT INTO events (event_id, source, type, subject, time, correlation_id, "
                    "sequence, schema_version, data, status, attempts, category, last_error, "
                    "recorded_at, processed_at) VALUES (:id, 'test', 'test.item.changed', "
                    ":subject, :at, :cid, :seq, 1, '{}', :status, :attempts, :category, "
                    ":error, :at, :processed)"
                ),
                {
                    "id": f"ev-{i}",
                    "subject": subject,
                    "at": AT,
                    "cid": f"corr-{subject}",
                    "seq": seq,
                    "status": status,
                    "attempts": attempts,
                    "category": category,
                    "error": error,
                    "processed": AT if processed else None,
                },
            )
        conn.execute(
            text(
                "INSERT INTO subjects (subject, last_sequence, pending, held_by) VALUES "
                "('deal-a', 2, 1, NULL), ('deal-b', 1, 0, 3), ('deal-c', 1, 1, NULL), "
                "('deal-d', 1, 0, NULL)"
            )
        )
    engine.dispose()


def test_upgrade_moves_each_events_state_and_the_worker_goes_on(db_url: str) -> None:
    write_old_store(db_url)
    runtime = Runtime.open(db_url)
    try:
        columns = {c["name"] for c in inspect(runtime.engine).get_columns("events")}
        assert not columns & {"status", "attempts", "category", "last_error", "processed_at"}
        with runtime.engine.connect() as conn:
            moved = conn.execute(select(event_state).order_by(event_state.c.pos)).all()
        assert [
            (r.subject, r.status, r.attempts, r.category, r.last_error, r.processed_at is not None)
            for r in moved
        ] == [(s, st, a, c, e, p) for s, _, st, a, c, e, p in OLD_ROWS]
        assert status_counts(runtime) == {
            "done": 1,
            "pending": 2,
            "exception": 1,
            "resolved": 1,
            "held_subjects": 1,
        }
        assert [e.id for e in list_events(runtime, status="pending")] == ["ev-3", "ev-1"]
        found = find_event(runtime, "ev-2")
        assert found is not None
        assert found["event"]["status"] == "exception"
        assert found["event"]["last_error"] == "PermanentError: no price for SKU-9"
        queue = {(i.id, i.status, i.attempts, i.recoverability) for i in list_exceptions(runtime)}
        assert queue == {
            ("ev-2", "exception", 1, "data_correction"),
            ("ev-3", "pending", 2, "automatic_retry"),
        }

        registry = Registry()
        ran: list[str] = []

        @registry.on("test.item.changed")
        async def handle(ctx: HandlerContext, event: Event) -> None:
            ran.append(event.id)

        report = asyncio.run(Worker(runtime, registry).drain())
        assert sorted(ran) == ["ev-1", "ev-3"]  # the pending ones, the retried one too
        assert report.processed == 2
        assert status_counts(runtime)["done"] == 3
    finally:
        runtime.close()

    engine = open_engine(db_url)
    command.downgrade(_alembic_config(engine), "0016")
    with engine.connect() as conn:
        back = conn.execute(
            text("SELECT event_id, status, attempts, category FROM events ORDER BY pos")
        ).all()
        assert not inspect(conn).has_table("event_state")
    engine.dispose()
    assert [tuple(r) for r in back] == [
        ("ev-0", "done", 1, None),
        ("ev-1", "done", 0, None),
        ("ev-2", "exception", 1, "data"),
        ("ev-3", "done", 2, None),
        ("ev-4", "resolved", 1, "mapping"),
    ]
