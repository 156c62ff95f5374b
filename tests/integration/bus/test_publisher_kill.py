"""The acceptance test of the outbound stream: ``q2c bus publish`` is killed with SIGKILL at
random points while business events keep arriving, restarted each time, and every event is in
the stream exactly once, in outbox order.

The stream's duplicate window is set to one second and each restart waits longer than that, so
JetStream's deduplication cannot be what saves a re-send: the publisher must settle the batch
it sent before dying (the stream's tail) itself.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import quote2cash
from integration.bus.conftest import fill, stream_count, stream_messages
from quote2cash.bus import outbox_store
from quote2cash.bus.publisher import BusConfig
from quote2cash.engine.runtime import Runtime

SRC = Path(quote2cash.__file__).parents[1]
FIRST, LATER, CHUNK = 600, 900, 30
KILLS = 5


def _publisher(db_url: str, bus: BusConfig, *options: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "Q2C_DATABASE_URL": db_url,
        "Q2C_BUS_URL": bus.url,
        "Q2C_BUS_STREAM": bus.stream,
        "Q2C_BUS_SUBJECT_PREFIX": bus.subject_prefix,
        "Q2C_BUS_BATCH_SIZE": str(bus.batch_size),
        "Q2C_BUS_DUPLICATE_WINDOW_SECONDS": "1",
        "Q2C_BUS_POLL_SECONDS": "0.05",
        "Q2C_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "quote2cash.cli", "bus", "publish", *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_growth(
    bus: BusConfig, above: int, proc: subprocess.Popen[bytes], everything: int
) -> int:
    """The stream's size once it grew past ``above`` (or holds ``everything``: a publisher may
    catch up with the writer before the last kill on a quiet machine)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"publisher exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        count = asyncio.run(stream_count(bus))
        if count > above or count >= everything:
            return count
        time.sleep(0.05)
    raise AssertionError(f"the stream did not grow past {above} messages in 90 s")


def test_sigkill_mid_stream_leaves_every_event_exactly_once_in_order(
    runtime: Runtime, db_url: str, bus: BusConfig
) -> None:
    rng = random.Random(17)
    fill(runtime, 0, FIRST)
    done_writing = threading.Event()

    def keep_writing() -> None:  # business events keep arriving while the publisher dies
        for start in range(FIRST, FIRST + LATER, CHUNK):
            fill(runtime, start, CHUNK)
            time.sleep(0.05)
        done_writing.set()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    seen = 0
    try:
        for _ in range(KILLS):
            proc = _publisher(db_url, bus)
            try:
                seen = _wait_for_growth(bus, seen, proc, FIRST + LATER)
                time.sleep(rng.uniform(0.0, 0.25))
            finally:  # killed here whatever happened: a failed wait leaves no publisher behind
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            time.sleep(1.2)  # past the stream's duplicate window
        writer.join(timeout=60)
        assert done_writing.is_set()
        last = _publisher(db_url, bus, "--once")  # what is left, then exit
        try:
            assert last.wait(timeout=120) == 0, last.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        finally:
            if last.poll() is None:
                last.kill()
    finally:
        done_writing.set()
        writer.join(timeout=60)

    total = FIRST + LATER
    assert outbox_store.backlog(runtime.engine).pending == 0
    messages = asyncio.run(stream_messages(bus))
    ids = Counter(m.msg_id for m in messages)
    assert [i for i, n in ids.items() if n > 1] == []  # nothing twice
    assert set(ids) == {f"msg-{n:06d}" for n in range(total)}  # nothing lost
    numbers = [m.envelope["data"]["n"] for m in messages]
    assert numbers == sorted(numbers)  # in outbox order
    first = messages[0]
    assert first.envelope["id"] == first.msg_id
    assert first.subject == f"{bus.subject_prefix}.{first.envelope['type'].removeprefix('q2c.')}"
