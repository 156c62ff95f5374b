"""An example consumer: a durable pull consumer that hands each business event to a callback and
acknowledges it explicitly only after the callback returned, so a consumer that dies re-reads
what it had not finished (at least once; deduplicate by the envelope's ``id``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from quote2cash.bus.publisher import BusConfig, BusError, connect

FETCH_BATCH = 100


async def tail(
    config: BusConfig,
    on_event: Callable[[dict[str, Any]], None],
    *,
    durable: str,
    filter_subject: str | None = None,
    count: int | None = None,
    idle_seconds: float | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Deliver events to ``on_event`` until ``count`` are handled, nothing arrives for
    ``idle_seconds``, or ``stop`` is set; returns how many were handled and acknowledged."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    subject = filter_subject or f"{config.subject_prefix}.>"
    handled = 0
    async with connect(config) as js:
        try:
            sub = await js.pull_subscribe(
                subject,
                durable=durable,
                stream=config.stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL
                ),
            )
        except NotFoundError:
            raise BusError(f"{config.where}: no such stream (has a publisher run?)") from None
        waited = 0.0
        while (count is None or handled < count) and not (stop is not None and stop.is_set()):
            want = FETCH_BATCH if count is None else min(FETCH_BATCH, count - handled)
            try:
                msgs = await sub.fetch(want, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                waited += 1.0
                if idle_seconds is not None and waited >= idle_seconds:
                    break
                continue
            waited = 0.0
            for msg in msgs:
                on_event(json.loads(msg.data))
                await msg.ack()
                handled += 1
    return handled
