"""Fixtures of the bus suite: the NATS server CI runs, a stream and subject prefix per test
(deleted after), an outbox filled with numbered business events, the stream read back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import missing_service
from quote2cash.bus.publisher import BusConfig
from quote2cash.engine.events import encode_data
from quote2cash.engine.outbox import Outgoing, write_outbox
from quote2cash.engine.runtime import Runtime

NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class StoredMessage:
    seq: int
    subject: str
    msg_id: str
    envelope: dict[str, Any]


async def _reachable(url: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    await nc.close()


def bus_config(url: str = NATS_URL, **overrides: Any) -> BusConfig:
    tag = uuid.uuid4().hex[:8]
    return BusConfig(
        url=url,
        stream=f"Q2C_BUS_TEST_{tag.upper()}",
        subject_prefix=f"q2ctest{tag}",
        **overrides,
    )


@pytest.fixture
def bus() -> Iterator[BusConfig]:
    """A stream of this test's own on the shared NATS server; deleted afterwards."""
    try:
        asyncio.run(_reachable(NATS_URL))
    except Exception as exc:
        missing_service(f"NATS JetStream at {NATS_URL} unreachable: {type(exc).__name__}")
    config = bus_config(batch_size=50)
    yield config
    asyncio.run(drop_stream(config))


async def drop_stream(config: BusConfig) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(config.url, allow_reconnect=False)
    try:
        await nc.jetstream().delete_stream(config.stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


async def stream_messages(config: BusConfig) -> list[StoredMessage]:
    """Every message the stream holds, in stream order, with its Nats-Msg-Id."""
    import json

    import nats

    nc = await nats.connect(config.url, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(config.stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(config.stream, seq)
            out.append(
                StoredMessage(
                    seq,
                    msg.subject or "",
                    (msg.headers or {}).get("Nats-Msg-Id", ""),
                    json.loads(msg.data or b"{}"),
                )
            )
        return out
    finally:
        await nc.close()


async def stream_count(config: BusConfig) -> int:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(config.url, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(config.stream)
        return int(info.state.messages)
    except NotFoundError:
        return 0
    finally:
        await nc.close()


TYPES = ("invoice.posted", "payment.received", "subscription.activated")


def numbered(start: int, count: int) -> list[Outgoing]:
    """Business events numbered ``start``.. (the number is in the data: order is checkable)."""
    now = datetime.now(UTC)
    return [
        Outgoing(
            message_id=f"msg-{n:06d}",
            type=TYPES[n % len(TYPES)],
            subject=f"contract:C-{n % 17}",
            correlation_id=f"deal-{n % 17}",
            causation_id=f"evt-{n}",
            time=now,
            data=encode_data({"n": n, "total": f"{n}.00"}),
        )
        for n in range(start, start + count)
    ]


def fill(runtime: Runtime, start: int, count: int) -> None:
    with runtime.engine.begin() as conn:
        write_outbox(conn, numbered(start, count), datetime.now(UTC))
