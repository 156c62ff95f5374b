"""Checkpoints on a JetStream stream that the server keeps append-only (deny delete and purge).

One subject per store (``q2c.audit.<stream>.<store id>``); ``latest`` asks the server for the
last message on it, so verify reads no more than one record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

from quote2cash.engine.checkpoints import Checkpoint, CheckpointError

STREAM = "Q2C_AUDIT_CHECKPOINTS"
STREAM_NOT_FOUND = 10059


class JetStreamCheckpoints:
    """Connects per call: checkpoints are batched, so a connection's cost is paid rarely."""

    def __init__(self, url: str, *, stream: str = STREAM, timeout: float = 5.0) -> None:
        self.url = url
        self.stream = stream
        self.subjects = f"q2c.audit.{stream}"
        self.timeout = timeout
        self.where = f"JetStream stream {stream} at {without_credentials(url)}"

    def _jetstream(self) -> AbstractAsyncContextManager[Any]:
        return jetstream(
            self.url, self.timeout, lambda why: CheckpointError(f"{self.where}: {why}")
        )

    async def prepare(self) -> None:
        """Create the stream (deny delete, deny purge) or check an existing one refuses both.

        Only a new store's first checkpoint calls this: a stream that disappears later is a
        loss verify reports, not something the next checkpoint quietly recreates.
        """
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        async with self._jetstream() as js:
            try:
                info = await js.stream_info(self.stream)
            except NotFoundError:
                config = StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.subjects}.>"],
                    storage=StorageType.FILE,
                    deny_delete=True,
                    deny_purge=True,
                    allow_rollup_hdrs=False,
                )
                try:
                    await js.add_stream(config)
                except Exception as exc:
                    reason = type(exc).__name__
                    raise CheckpointError(f"{self.where}: cannot create ({reason})") from None
                return
            except Exception as exc:
                raise CheckpointError(f"{self.where}: cannot read ({type(exc).__name__})") from None
            if not (info.config.deny_delete and info.config.deny_purge):
                raise CheckpointError(f"{self.where}: the stream allows delete or purge")

    async def append(self, checkpoint: Checkpoint) -> None:
        from nats.errors import NoRespondersError
        from nats.js.errors import NoStreamResponseError

        async with self._jetstream() as js:
            try:
                await js.publish(
                    f"{self.subjects}.{checkpoint.store_id}",
                    checkpoint.to_json().encode(),
                    stream=self.stream,
                )
            except (NoStreamResponseError, NoRespondersError):
                raise CheckpointError(f"{self.where}: the stream is missing (deleted?)") from None
            except Exception as exc:
                raise CheckpointError(f"{self.where}: not stored ({type(exc).__name__})") from None

    async def latest(self, store_id: str) -> Checkpoint | None:
        from nats.js.errors import NotFoundError

        async with self._jetstream() as js:
            try:
                msg = await js.get_last_msg(self.stream, f"{self.subjects}.{store_id}")
            except NotFoundError as exc:
                if exc.err_code == STREAM_NOT_FOUND:
                    raise CheckpointError(f"{self.where}: the stream is missing") from None
                return None
            except Exception as exc:
                raise CheckpointError(f"{self.where}: cannot read ({type(exc).__name__})") from None
        return Checkpoint.from_json(msg.data or b"")


@asynccontextmanager
async def jetstream(
    url: str,
    timeout: float,  # noqa: ASYNC109 (bounds the connect and each JetStream request)
    unreachable: Callable[[str], Exception],
) -> AsyncIterator[Any]:
    """A JetStream context on a connection of its own, without silent reconnects: the caller
    decides when to try again; a refused connect raises ``unreachable("unreachable (...)")``.
    ``timeout`` bounds the connect and every JetStream request alike."""
    import nats

    try:
        # nats-py retries a refused first connect without end and prints each try's
        # traceback through error_cb: bound it, and keep it quiet.
        nc = await asyncio.wait_for(
            nats.connect(
                url,
                connect_timeout=timeout,
                max_reconnect_attempts=1,
                allow_reconnect=False,
                error_cb=_ignore,
            ),
            timeout=timeout,
        )
    except Exception as exc:
        raise unreachable(f"unreachable ({type(exc).__name__})") from None
    try:
        yield nc.jetstream(timeout=timeout)
    finally:
        with suppress(Exception):
            await nc.close()


async def _ignore(error: Exception) -> None:
    return None


def without_credentials(url: str) -> str:
    """The URL as it may be shown: no user or password."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url
