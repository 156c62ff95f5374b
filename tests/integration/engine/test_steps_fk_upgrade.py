"""0026 drops the step rows' foreign key to ``events`` (a row lock per step on PostgreSQL): a store
written at 0025 keeps every step row through the upgrade (SQLite rebuilds the table), and a
downgrade puts the key back."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import inspect, select, text

from quote2cash.store.db import _alembic_config, migrate, open_engine
from quote2cash.store.schema import steps

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _foreign_keys(engine: object) -> list[str]:
    return [fk["referred_table"] for fk in inspect(engine).get_foreign_keys("steps")]


def test_the_upgrade_keeps_step_rows_and_a_downgrade_restores_the_key(db_url: str) -> None:
    engine = open_engine(db_url)
    migrate(engine, "0025")
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(
                text(
                    "INSERT INTO events (event_id, source, type, subject, time, correlation_id, "
                    "sequence, schema_version, data, recorded_at) VALUES (:id, 'test', "
                    "'test.item.changed', 'deal-a', :at, 'corr', :seq, 1, '{}', :at)"
                ),
                {"id": f"ev-{i}", "at": AT, "seq": i + 1},
            )
        positions = [p for (p,) in conn.execute(text("SELECT pos FROM events ORDER BY pos"))]
        for pos in positions:
            conn.execute(
                steps.insert().values(
                    event_pos=pos,
                    name="erp.book",
                    idempotency_key=f"key-{pos}",
                    system="erp",
                    result='"ok"',
                    completed_at=AT,
                )
            )
    assert _foreign_keys(engine) == ["events"]

    migrate(engine)
    assert _foreign_keys(engine) == []
    with engine.connect() as conn:
        kept = conn.execute(select(steps.c.event_pos, steps.c.idempotency_key)).all()
    assert sorted(kept) == [(pos, f"key-{pos}") for pos in positions]

    command.downgrade(_alembic_config(engine), "0025")
    assert _foreign_keys(engine) == ["events"]
    with engine.connect() as conn:
        assert sorted(conn.execute(select(steps.c.event_pos)).scalars()) == positions
    engine.dispose()
