"""Checkpoints on a JetStream stream that the server keeps append-only (deny delete and purge).

One subject per store (``q2c.audit.checkpoint.<store id>``); ``latest`` asks the server for the
last message on it, so verify reads no more than one record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from quote2cash.engine.checkpoints import Checkpoint, CheckpointError

STREAM = "Q2C_AUDIT_CHECKPOINTS"
SUBJECT = "q2c.audit.checkpoint"


class JetStreamCheckpoints:
    """Connects per call: checkpoints are batched, so a connection's cost is paid rarely."""

    def __init__(self, url: str, *, stream: str = STREAM, timeout: float = 5.0) -> None:
        self.url = url
        self.stream = stream
        self.timeout = timeout
        self.where = f"JetStream stream {stream} at {_without_credentials(url)}"

    @asynccontextmanager
    async def _jetstream(self) -> AsyncIterator[Any]:
        import nats
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        try:
            nc = await nats.connect(
                self.url,
                connect_timeout=self.timeout,
                max_reconnect_attempts=0,
                allow_reconnect=False,
            )
        except Exception as exc:
            raise CheckpointError(f"{self.where}: unreachable ({type(exc).__name__})") from None
        try:
            js = nc.jetstream(timeout=self.timeout)
            config = StreamConfig(
                name=self.stream,
                subjects=[f"{SUBJECT}.>"],
                storage=StorageType.FILE,
                deny_delete=True,
                deny_purge=True,
                allow_rollup_hdrs=False,
            )
            try:
                await js.add_stream(config)
            except BadRequestError:
                info = await js.stream_info(self.stream)
                if not (info.config.deny_delete and info.config.deny_purge):
                    raise CheckpointError(
                        f"{self.where}: the stream allows delete or purge; recreate it"
                    ) from None
            yield js
        finally:
            await nc.close()

    async def append(self, checkpoint: Checkpoint) -> None:
        async with self._jetstream() as js:
            try:
                await js.publish(
                    f"{SUBJECT}.{checkpoint.store_id}",
                    checkpoint.to_json().encode(),
                    stream=self.stream,
                )
            except Exception as exc:
                raise CheckpointError(f"{self.where}: not stored ({type(exc).__name__})") from None

    async def latest(self, store_id: str) -> Checkpoint | None:
        from nats.js.errors import NotFoundError

        async with self._jetstream() as js:
            try:
                msg = await js.get_last_msg(self.stream, f"{SUBJECT}.{store_id}")
            except NotFoundError:
                return None
            except Exception as exc:
                raise CheckpointError(f"{self.where}: cannot read ({type(exc).__name__})") from None
        return Checkpoint.from_json(msg.data or b"")


def _without_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
