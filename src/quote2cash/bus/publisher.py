"""The bus publisher: sends the outbox to a JetStream stream in id order, exactly once.

Each batch is published with every row's message id as ``Nats-Msg-Id`` and marked published only
after JetStream acknowledged all of it. A publisher that dies between the two leaves at most one
batch unmarked; on (re)start it reads the stream's last ``batch_size`` message ids and marks those
rows first, so it re-sends none of them however long it was down; a re-send that still happens
(two publishers, a batch half-acknowledged) is dropped by JetStream's duplicate window. A lost
NATS server is reconnected with capped, jittered backoff; the store is never written meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from quote2cash.bus import outbox_store
from quote2cash.bus.catalog import stream_subjects, subject_of
from quote2cash.bus.envelope import MSG_ID_HEADER, OutboxRow
from quote2cash.engine.checkpoints_jetstream import jetstream, without_credentials
from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.leadership import Leadership
from quote2cash.observability import metrics

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from quote2cash.settings import Settings

log = logging.getLogger("quote2cash.bus")
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
LEASE_SECONDS = 15.0
PRUNE_EVERY = 600.0


class BusError(Exception):
    """A NATS or stream problem, named without credentials."""


@dataclass(frozen=True)
class BusConfig:
    """Where and how business events are published (``Q2C_BUS_*``)."""

    url: str
    stream: str = "Q2C_BUSINESS_EVENTS"
    subject_prefix: str = "q2c"
    duplicate_window: float = 600.0
    batch_size: int = 256
    poll_seconds: float = 0.2
    timeout: float = 5.0
    keep_published_days: float = 7.0
    """Published rows stay in the outbox this long (to answer "was it sent, when"), then go."""

    @classmethod
    def from_settings(cls, settings: Settings) -> BusConfig:
        return cls(
            url=settings.bus_url,
            stream=settings.bus_stream,
            subject_prefix=settings.bus_subject_prefix,
            duplicate_window=settings.bus_duplicate_window_seconds,
            batch_size=settings.bus_batch_size,
            poll_seconds=settings.bus_poll_seconds,
            keep_published_days=settings.bus_keep_published_days,
        )

    @property
    def where(self) -> str:
        return f"JetStream stream {self.stream} at {without_credentials(self.url)}"


def is_nats_url(url: str) -> bool:
    return url.startswith(("nats://", "tls://"))


@dataclass
class PublisherStats:
    published: int = 0
    duplicates: int = 0
    settled_on_start: int = 0
    reconnects: int = 0
    batches: int = 0
    last_error: str | None = field(default=None)


class BusPublisher:
    """Run one in every hub process if you like: the store's lease lets one publish at a time
    (a stale one that still sends a batch is dropped by JetStream's duplicate window)."""

    def __init__(
        self,
        engine: Engine,
        config: BusConfig,
        *,
        clock: Clock | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock or SystemClock()
        self.lease_seconds = lease_seconds
        self._lease = Leadership(engine, config.stream, lease_seconds, clock=self.clock)
        self.owner = self._lease.owner
        self.stats = PublisherStats()
        self._next_prune = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set while this publisher holds the stream's lease (other
        processes' publishers wait), reconnecting after any NATS or store failure."""
        delay = BACKOFF_FIRST
        try:
            while not stop.is_set():
                try:
                    if not await self.lead():
                        await _wait(stop, min(self.lease_seconds / 3, 1.0))
                        continue
                    async with connect(self.config) as js:
                        await ensure_stream(js, self.config)
                        await self.settle_tail(js)
                        delay = BACKOFF_FIRST
                        while not stop.is_set() and await self.lead():
                            if await self.publish_batch(js) == 0:
                                await self._observe_lag()
                                await self._prune()
                                await _wait(stop, self.config.poll_seconds)
                except Exception as exc:
                    reason = str(exc) if isinstance(exc, BusError) else type(exc).__name__
                    self.stats.last_error = reason
                    self.stats.reconnects += 1
                    pause = random.uniform(delay / 2, delay)
                    log.warning("bus publisher: %s; reconnecting in %.1f s", reason, pause)
                    with suppress(Exception):  # the lag matters most while NATS is away
                        await self._observe_lag()
                    await _wait(stop, pause)
                    delay = min(delay * 2, BACKOFF_CAP)
        finally:
            await self._lease.release()

    async def lead(self) -> bool:
        """Whether this publisher holds the stream's lease (``engine/leadership.py``)."""
        was = self._lease.holding
        held = await self._lease.held()
        if held and not was:
            log.info("bus publisher %s publishes %s", self.owner, self.config.where)
        return held

    async def publish_batch(self, js: Any) -> int:
        """Publish the oldest unpublished rows and mark them; returns how many were sent."""
        rows = await asyncio.to_thread(
            outbox_store.unpublished, self.engine, self.config.batch_size
        )
        if not rows:
            return 0
        futures = [await self._send(js, row) for row in rows]
        acks = await asyncio.wait_for(
            asyncio.gather(*futures), timeout=self.config.timeout + len(rows) * 0.01
        )
        for ack in acks:
            if getattr(ack, "duplicate", False):
                self.stats.duplicates += 1
        await asyncio.to_thread(
            outbox_store.mark_published, self.engine, [r.id for r in rows], self.clock.now()
        )
        self.stats.published += len(rows)
        self.stats.batches += 1
        return len(rows)

    async def _send(self, js: Any, row: OutboxRow) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await js.publish_async(
            subject_of(self.config.subject_prefix, row.type),
            row.payload(),
            headers={MSG_ID_HEADER: row.message_id},
            wait_stall=self.config.timeout,
        )
        return future

    async def settle_tail(self, js: Any) -> int:
        """Mark the rows the stream's last ``batch_size`` messages hold (a batch sent just before
        a crash, unmarked): they are never sent again, whatever the duplicate window."""
        from nats.js.errors import NotFoundError

        info = await js.stream_info(self.config.stream)
        last, first = int(info.state.last_seq or 0), int(info.state.first_seq or 0)
        if last == 0:
            return 0
        ids: set[str] = set()
        for seq in range(max(first, last - self.config.batch_size + 1), last + 1):
            try:
                msg = await js.get_msg(self.config.stream, seq)
            except NotFoundError:
                continue
            ident = (msg.headers or {}).get(MSG_ID_HEADER)
            if ident:
                ids.add(ident)
        settled = await asyncio.to_thread(
            outbox_store.mark_published_messages, self.engine, ids, self.clock.now()
        )
        self.stats.settled_on_start += settled
        if settled:
            log.info("bus publisher: %d events were on the stream already (marked)", settled)
        return settled

    async def _prune(self) -> None:
        """When idle, at most once every ``PRUNE_EVERY`` seconds: published rows past their
        keeping time leave the outbox (a batch at a time, so no long transaction)."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        before = self.clock.now() - timedelta(days=self.config.keep_published_days)
        pruned = await asyncio.to_thread(outbox_store.prune_published, self.engine, before)
        if pruned:
            log.info("bus publisher: %d published events left the outbox", pruned)

    async def _observe_lag(self) -> None:
        lag = await asyncio.to_thread(outbox_store.backlog, self.engine)
        age = (self.clock.now() - lag.oldest).total_seconds() if lag.oldest else 0.0
        metrics.bus_lag(lag.pending, max(age, 0.0))


def connect(config: BusConfig) -> AbstractAsyncContextManager[Any]:
    """A JetStream context on a connection of our own; no silent reconnects (``run`` decides)."""
    return jetstream(config.url, config.timeout, lambda why: BusError(f"{config.where}: {why}"))


async def ensure_stream(js: Any, config: BusConfig) -> None:
    """Create the stream (file storage, the configured duplicate window) unless it exists."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(config.stream)
        return
    except NotFoundError:
        pass
    await js.add_stream(
        StreamConfig(
            name=config.stream,
            subjects=stream_subjects(config.subject_prefix),
            storage=StorageType.FILE,
            duplicate_window=config.duplicate_window,
        )
    )
    log.info("bus publisher: created %s", config.where)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
