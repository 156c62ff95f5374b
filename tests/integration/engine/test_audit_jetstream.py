"""Checkpoints on a real JetStream stream: the server refuses delete, purge and relaxing them,
and verify reads the stream's last checkpoint to catch a wiped log."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, update
from typer.testing import CliRunner

from conftest import missing_service
from quote2cash.cli import app
from quote2cash.engine.audit import GENESIS, AuditEntry, append_audit
from quote2cash.engine.checkpoints import checkpoint_now, run_sync
from quote2cash.engine.checkpoints_jetstream import JetStreamCheckpoints
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import audit_head, audit_log
from support.forger import forging

NATS_URL = "nats://127.0.0.1:4222"
runner = CliRunner()


async def _reachable() -> None:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
    await nc.close()


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stream of this test's own (the hub's default name is shared by every store)."""
    try:
        asyncio.run(_reachable())
    except Exception as exc:
        missing_service(f"NATS JetStream at {NATS_URL} unreachable: {type(exc).__name__}")
    name = f"Q2C_AUDIT_TEST_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv("Q2C_AUDIT_CHECKPOINT_URL", NATS_URL)
    monkeypatch.setenv("Q2C_AUDIT_CHECKPOINT_STREAM", name)
    yield name
    asyncio.run(_drop(name))


async def _drop(name: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    await nc.jetstream().delete_stream(name)
    await nc.close()


async def _server_refusals(name: str) -> list[str]:
    """Try each way to rewrite history through the JetStream API; return the server's answers."""
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    answers: list[str] = []
    relaxed = StreamConfig(
        name=name, subjects=[f"q2c.audit.{name}.>"], storage=StorageType.FILE, deny_delete=False
    )
    attempts: list[Any] = [
        js.delete_msg(name, 1),
        js.purge_stream(name),
        js.purge_stream(name, subject=f"q2c.audit.{name}.>"),
        js.update_stream(relaxed),
    ]
    for attempt in attempts:
        try:
            await attempt
            answers.append("allowed")
        except Exception as exc:
            answers.append(str(exc))
    info = await js.stream_info(name)
    answers.append(f"messages={info.state.messages}")
    await nc.close()
    return answers


def test_checkpoints_on_jetstream_survive_a_wiped_log(
    stream: str, tmp_path: Any, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    hub = Runtime.open(url, clock=clock, sqlite_synchronous="NORMAL")
    assert isinstance(hub.checkpoints, JetStreamCheckpoints)
    assert hub.checkpoints.stream == stream
    with hub.engine.begin() as conn:
        append_audit(
            conn, [AuditEntry("maria", "replay.requested", f"r{i}") for i in range(5)], clock.now()
        )
    checkpoint_now(hub)

    ok = runner.invoke(app, ["audit", "verify", "--db", url, "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["checkpoints"] == f"JetStream stream {stream} at {NATS_URL}"

    answers = asyncio.run(_server_refusals(stream))
    assert "message delete not permitted" in answers[0]
    assert "purge not permitted" in answers[1] and "purge not permitted" in answers[2]
    assert "can not cancel deny message deletes" in answers[3]
    assert answers[4] == "messages=2"  # genesis seal + the checkpoint, both still there

    with forging(hub.engine) as conn:
        conn.execute(delete(audit_log))
        conn.execute(update(audit_head).values(seq=0, hash=GENESIS))
    bad = runner.invoke(app, ["audit", "verify", "--db", url, "--format", "json"])
    assert bad.exit_code == 1
    assert "entries 1..5 were removed (wiped" in json.loads(bad.stdout)["reason"]
    hub.close()


def test_a_deleted_stream_is_a_loss_not_a_fresh_start(
    stream: str, tmp_path: Any, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    hub = Runtime.open(url, clock=clock, sqlite_synchronous="NORMAL")
    with hub.engine.begin() as conn:
        append_audit(conn, [AuditEntry("maria", "replay.requested", "r1")], clock.now())
    asyncio.run(_drop(stream))
    with pytest.raises(Exception, match="the stream is missing"):
        checkpoint_now(hub)
    bad = runner.invoke(app, ["audit", "verify", "--db", url])
    assert bad.exit_code == 1
    assert "the stream is missing" in " ".join(bad.output.split())
    run_sync(hub.checkpoints.prepare())  # recreate it so the fixture can drop it
    hub.close()


def test_unreachable_nats_is_one_clear_line(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    Runtime.open(url, clock=clock).close()
    monkeypatch.setenv("Q2C_AUDIT_CHECKPOINT_URL", "nats://user:s3cret@127.0.0.1:1")
    bad = runner.invoke(app, ["audit", "verify", "--db", url])
    line = " ".join(bad.output.split())
    assert bad.exit_code == 1
    assert "unreachable" in line and "127.0.0.1:1" in line
    assert "s3cret" not in line and "Traceback" not in line
