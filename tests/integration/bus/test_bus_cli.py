"""``q2c bus publish|status|tail`` as an operator runs them, and ``q2c serve`` publishing the
outbox itself when a NATS bus is configured."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from integration.bus.conftest import fill, stream_count, stream_messages
from quote2cash.api.serve import ServeOptions, serve
from quote2cash.bus import outbox_store
from quote2cash.bus.publisher import BusConfig
from quote2cash.connectors.registry import Systems
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.runtime import Runtime

SRC = Path(__file__).parents[3] / "src"


def q2c(*args: str, db: str, bus: BusConfig, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "Q2C_DATABASE_URL": db,
        "Q2C_BUS_URL": bus.url,
        "Q2C_BUS_STREAM": bus.stream,
        "Q2C_BUS_SUBJECT_PREFIX": bus.subject_prefix,
        "Q2C_LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "quote2cash.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_publish_once_status_and_tail_with_a_durable_consumer(
    runtime: Runtime, db_url: str, bus: BusConfig
) -> None:
    fill(runtime, 0, 25)
    status = q2c("bus", "status", "--format", "json", db=db_url, bus=bus)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["pending"] == 25

    done = q2c("bus", "publish", "--once", "--format", "json", db=db_url, bus=bus)
    assert done.returncode == 0, done.stderr
    assert _lines(done.stdout)[-1] == {
        "published": 25,
        "already_on_stream": 0,
        "duplicates_dropped": 0,
    }
    status = q2c("bus", "status", "--format", "json", db=db_url, bus=bus)
    assert json.loads(status.stdout)[0]["pending"] == 0

    # A durable consumer acknowledges what it printed: the next run starts after it.
    tail = ("bus", "tail", "--format", "json", "--durable", "ops-tail")
    first = q2c(*tail, "--count", "10", db=db_url, bus=bus)
    assert first.returncode == 0, first.stderr
    assert [e["data"]["n"] for e in _lines(first.stdout)] == list(range(10))
    rest = q2c(*tail, "--idle", "1", db=db_url, bus=bus)
    assert [e["data"]["n"] for e in _lines(rest.stdout)] == list(range(10, 25))
    payments = q2c(
        "bus",
        "tail",
        "--format",
        "json",
        "--durable",
        "payments-only",
        "--subject",
        f"{bus.subject_prefix}.payment.*",
        "--idle",
        "1",
        db=db_url,
        bus=bus,
    )
    got = _lines(payments.stdout)
    assert got and {e["type"] for e in got} == {"q2c.payment.received"}
    assert {e["correlation_id"] for e in got} <= {f"deal-{n}" for n in range(17)}

    table = q2c(*tail[:2], "--durable", "ops-table", "--count", "2", db=db_url, bus=bus)
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.splitlines()) == 2 and "q2c.payment.received" in table.stdout


def test_a_bad_or_unreachable_bus_is_one_clear_line(
    runtime: Runtime, db_url: str, bus: BusConfig
) -> None:
    embedded = q2c("bus", "publish", "--once", db=db_url, bus=bus, Q2C_BUS_URL="embedded")
    assert embedded.returncode == 2
    assert "expected nats://host:port" in embedded.stderr
    away = q2c(
        "bus", "publish", "--once", db=db_url, bus=bus, Q2C_BUS_URL="nats://ops:s3cret@127.0.0.1:1"
    )
    assert away.returncode == 2
    assert "unreachable" in away.stderr and "127.0.0.1:1" in away.stderr
    assert "s3cret" not in away.stderr + away.stdout
    assert "Traceback" not in away.stderr


async def test_serve_publishes_the_outbox_when_a_bus_is_configured(
    runtime: Runtime, bus: BusConfig
) -> None:
    fill(runtime, 0, 30)
    stop = asyncio.Event()
    options = ServeOptions(
        port=0, workers=False, poll_seconds=0, config_dir=packaged_config_dir(), bus=bus
    )
    task = asyncio.create_task(
        serve(runtime, Systems(), stop, options, stripe_verifier=None, callout_secret=None)
    )
    try:
        for _ in range(600):
            if await stream_count(bus) == 30:
                break
            await asyncio.sleep(0.05)
        fill(runtime, 30, 5)  # while serving
        for _ in range(600):
            if await stream_count(bus) == 35:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert [m.envelope["data"]["n"] for m in await stream_messages(bus)] == list(range(35))
    assert outbox_store.backlog(runtime.engine).pending == 0
