"""The publisher's store side: unpublished rows in id order, marks, backlog, and pruning that
only ever removes rows already on the stream."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, func, select

from integration.bus.conftest import fill
from quote2cash.bus import outbox_store
from quote2cash.bus.publisher import BusConfig, BusPublisher
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import outbox


def test_marks_backlog_and_pruning_spare_what_is_not_on_the_stream(runtime: Runtime) -> None:
    fill(runtime, 0, 10)
    rows = outbox_store.unpublished(runtime.engine, 100)
    assert [r.message_id for r in rows] == [f"msg-{n:06d}" for n in range(10)]
    sent_at = datetime(2026, 1, 1, tzinfo=UTC)
    outbox_store.mark_published(runtime.engine, [r.id for r in rows[:6]], sent_at)
    assert (
        outbox_store.mark_published_messages(
            runtime.engine, {"msg-000006", "msg-000000", "no-such"}, sent_at
        )
        == 1
    )  # msg-000000 was marked already
    lag = outbox_store.backlog(runtime.engine)
    assert lag.pending == 3 and lag.oldest is not None

    assert outbox_store.prune_published(runtime.engine, sent_at) == 0  # not before it
    assert outbox_store.prune_published(runtime.engine, sent_at + timedelta(seconds=1)) == 7
    left = outbox_store.unpublished(runtime.engine, 100)
    assert [r.message_id for r in left] == ["msg-000007", "msg-000008", "msg-000009"]
    assert outbox_store.backlog(runtime.engine).pending == 3


async def test_an_idle_publisher_prunes_past_its_keeping_time(runtime: Runtime) -> None:
    fill(runtime, 0, 4)
    rows = outbox_store.unpublished(runtime.engine, 100)
    long_ago = datetime.now(UTC) - timedelta(days=8)
    outbox_store.mark_published(runtime.engine, [r.id for r in rows[:3]], long_ago)
    publisher = BusPublisher(runtime.engine, BusConfig(url="nats://127.0.0.1:4222"))
    await publisher._prune()
    assert [r.message_id for r in outbox_store.unpublished(runtime.engine, 100)] == ["msg-000003"]
    assert outbox_store.backlog(runtime.engine).pending == 1
    fill(runtime, 10, 1)
    outbox_store.mark_published(
        runtime.engine, [outbox_store.unpublished(runtime.engine, 9)[-1].id], long_ago
    )
    await publisher._prune()  # at most once every PRUNE_EVERY seconds: this one waits

    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 2


async def test_a_store_that_is_away_never_ends_the_publisher() -> None:
    """The store unreachable (a PostgreSQL port nobody listens on): the publisher logs, backs
    off and keeps trying until it is stopped; it never dies with the error."""
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    publisher = BusPublisher(engine, BusConfig(url="nats://127.0.0.1:4222", timeout=1.0))
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    await asyncio.sleep(2.0)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert publisher.stats.reconnects >= 2
    assert publisher.stats.last_error == "OperationalError"
