"""The publisher outlives its NATS server: a server stopped mid-stream and started again (same
store folder) gets the rest, and the stream holds every event once; meanwhile the outbox lag is
a Prometheus figure that grows, then falls back to zero."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import missing_service
from integration.bus.conftest import bus_config, fill, stream_count, stream_messages
from quote2cash.bus import outbox_store
from quote2cash.bus.publisher import BusPublisher
from quote2cash.engine.runtime import Runtime
from quote2cash.observability import metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnNats:
    """A nats-server of this test's own, so it can be stopped and started again."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nats-server did not start in 15 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[OwnNats]:
    binary = shutil.which("nats-server")
    if binary is None:
        missing_service("the nats-server binary (to stop and restart a server of the test's own)")
    server = OwnNats(str(binary), tmp_path / "nats")
    server.start()
    yield server
    server.stop()


def _lag() -> float:
    value = metrics.REGISTRY.get_sample_value("q2c_bus_outbox_lag", {"measure": "events"})
    return -1.0 if value is None else value


async def test_publisher_survives_a_nats_restart(runtime: Runtime, own_nats: OwnNats) -> None:
    metrics.configure(True)
    config = bus_config(url=own_nats.url, batch_size=40, poll_seconds=0.05, timeout=2.0)
    publisher = BusPublisher(runtime.engine, config)
    stop = asyncio.Event()
    fill(runtime, 0, 400)
    task = asyncio.create_task(publisher.run(stop))
    try:
        for _ in range(1500):  # the first batch is on the stream: stop the server mid-stream
            if await stream_count(config):
                break
            await asyncio.sleep(0.02)
        await asyncio.to_thread(own_nats.stop)
        fill(runtime, 400, 400)  # arrives while the server is away
        await asyncio.sleep(1.5)
        waiting = (await asyncio.to_thread(outbox_store.backlog, runtime.engine)).pending
        assert waiting > 0
        for _ in range(300):  # reported while the server is away (between reconnect tries)
            if _lag() > 0:
                break
            await asyncio.sleep(0.05)
        assert _lag() > 0
        await asyncio.to_thread(own_nats.start)
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(outbox_store.backlog, runtime.engine)).pending:
            assert time.monotonic() < deadline, publisher.stats
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # an idle round reports the lag
    finally:
        stop.set()
        await task
    assert publisher.stats.reconnects >= 1
    assert _lag() == 0.0
    messages = await stream_messages(config)
    ids = Counter(m.msg_id for m in messages)
    assert max(ids.values()) == 1
    assert set(ids) == {f"msg-{n:06d}" for n in range(800)}
