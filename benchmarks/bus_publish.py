"""Bus publisher throughput: outbox rows to a JetStream stream, exactly once, against the naive
relay measured in the same run (publish one message, wait for its ack, mark its row, repeat).

    python benchmarks/bus_publish.py --quick          # 5,000 events, SQLite
    python benchmarks/bus_publish.py --db postgresql://postgres@127.0.0.1:5432/test

The last line is one JSON object: ``events_per_s`` (the publisher: batches of 256 published
asynchronously, one mark per batch), ``naive_events_per_s``, ``speedup``. Every event is
checked on the stream once (``duplicates``, ``missing`` must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("Q2C_AUDIT_KEY", "benchmark-audit-key-not-secret")
os.environ.setdefault(  # a new store's first checkpoint goes here, not into the working folder
    "Q2C_AUDIT_CHECKPOINT_FILE", f"{tempfile.gettempdir()}/q2c-bus-bench-checkpoints.jsonl"
)

from quote2cash.bus import outbox_store
from quote2cash.bus.catalog import subject_of
from quote2cash.bus.envelope import MSG_ID_HEADER
from quote2cash.bus.publisher import BusConfig, BusPublisher, connect, ensure_stream
from quote2cash.engine.events import encode_data
from quote2cash.engine.outbox import Outgoing, write_outbox
from quote2cash.engine.runtime import Runtime

TYPES = ("invoice.posted", "payment.received", "subscription.activated")


def fill(runtime: Runtime, count: int, tag: str) -> None:
    now = datetime.now(UTC)
    rows = [
        Outgoing(
            message_id=f"{tag}-{n:07d}",
            type=TYPES[n % 3],
            subject=f"contract:C-{n % 500}",
            correlation_id=f"deal-{n % 500}",
            causation_id=f"evt-{n}",
            time=now,
            data=encode_data(
                {"invoice_id": f"in_{n}", "currency": "EUR", "amount": f"{n % 997}.50"}
            ),
        )
        for n in range(count)
    ]
    with runtime.engine.begin() as conn:
        for start in range(0, count, 5000):
            write_outbox(conn, rows[start : start + 5000], now)


async def naive(runtime: Runtime, config: BusConfig) -> float:
    """The baseline relay: one publish, one ack, one mark at a time."""
    rows = outbox_store.unpublished(runtime.engine, 1_000_000)
    started = time.perf_counter()
    async with connect(config) as js:
        await ensure_stream(js, config)
        for row in rows:
            await js.publish(
                subject_of(config.subject_prefix, row.type),
                row.payload(),
                headers={MSG_ID_HEADER: row.message_id},
            )
            outbox_store.mark_published(runtime.engine, [row.id], datetime.now(UTC))
    return len(rows) / (time.perf_counter() - started)


async def publisher(runtime: Runtime, config: BusConfig) -> float:
    pub = BusPublisher(runtime.engine, config)
    started = time.perf_counter()
    async with connect(config) as js:
        await ensure_stream(js, config)
        while await pub.publish_batch(js):
            pass
    return pub.stats.published / (time.perf_counter() - started)


async def stream_ids(config: BusConfig) -> Counter[str]:
    """Every Nats-Msg-Id on the stream, read with an ordered push consumer."""
    import nats

    nc = await nats.connect(config.url)
    js = nc.jetstream()
    info = await js.stream_info(config.stream)
    ids: Counter[str] = Counter()
    sub = await js.subscribe(f"{config.subject_prefix}.>", ordered_consumer=True)
    while sum(ids.values()) < info.state.messages:
        msg = await sub.next_msg(timeout=10)
        ids[(msg.headers or {}).get(MSG_ID_HEADER, "")] += 1
    await sub.unsubscribe()
    await js.delete_stream(config.stream)
    await nc.close()
    return ids


def run(db: str, events: int, naive_events: int, nats_url: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, count, relay in (("naive", naive_events, naive), ("publisher", events, publisher)):
        tag = uuid.uuid4().hex[:8]
        config = BusConfig(
            url=nats_url, stream=f"Q2C_BENCH_{tag.upper()}", subject_prefix=f"b{tag}"
        )
        runtime = Runtime.open(db.replace("{tag}", tag), sqlite_synchronous="NORMAL")
        try:
            fill(runtime, count, tag)
            rate = asyncio.run(relay(runtime, config))
            ids = asyncio.run(stream_ids(config))
        finally:
            runtime.close()
        figures[f"{name}_events"] = count
        figures[f"{name}_events_per_s"] = round(rate, 1)
        figures[f"{name}_duplicates"] = sum(n - 1 for n in ids.values() if n > 1)
        figures[f"{name}_missing"] = count - len(ids)
    return {
        "events_per_s": figures["publisher_events_per_s"],
        "naive_events_per_s": figures["naive_events_per_s"],
        "speedup": round(figures["publisher_events_per_s"] / figures["naive_events_per_s"], 1),
        "events": events,
        "duplicates": figures["publisher_duplicates"] + figures["naive_duplicates"],
        "missing": figures["publisher_missing"] + figures["naive_missing"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events (under a minute)")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument(
        "--db", default=None, help="store URL (default: SQLite files in a temp dir)"
    )
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    events = 5_000 if args.quick else args.events
    folder = Path(tempfile.mkdtemp(prefix="q2c-bus-bench-"))
    db = args.db or f"sqlite:///{folder}/bus-{{tag}}.sqlite"
    result = run(db, events, min(events // 5, 2_000), args.nats)
    result["backend"] = "postgresql" if db.startswith("postgresql") else "sqlite"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
