"""The audit key's life: made by `q2c init` next to the store (0600), found again, refused when
others may read it, never shown; and the loop checkpointer that bounds what can be cut."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.checkpoints import Checkpointer
from quote2cash.engine.checkpoints_file import FileCheckpoints
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.store.db import open_engine

runner = CliRunner()


def one_line(output: str) -> str:
    """The output as one line: the console wraps at 80 columns, mid-word in long paths."""
    return output.replace("\n", "")


@pytest.fixture
def no_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("Q2C_AUDIT_KEY", "Q2C_AUDIT_KEY_FILE", "Q2C_AUDIT_CHECKPOINT_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_configured_key")
def test_init_makes_a_private_key_next_to_the_store_and_finds_it_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub' / 'q2c.sqlite'}"
    first = runner.invoke(app, ["init", "--db", url])
    assert first.exit_code == 0, first.output
    key_file = tmp_path / "hub" / "q2c.sqlite.audit-key"
    checkpoints = tmp_path / "hub" / "q2c.sqlite.audit-checkpoints.jsonl"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert checkpoints.stat().st_mode & 0o777 == 0o600
    secret = key_file.read_text().strip()
    said = one_line(first.output)
    assert "created" in said and str(key_file) in said and secret not in said
    assert json.loads(checkpoints.read_text().splitlines()[0])["seq"] == 0

    again = runner.invoke(app, ["init", "--db", url])
    assert again.exit_code == 0 and "found" in one_line(again.output)
    assert key_file.read_text().strip() == secret
    ok = runner.invoke(app, ["audit", "verify", "--db", url])
    assert ok.exit_code == 0, ok.output
    assert secret not in ok.output


@pytest.mark.usefixtures("no_configured_key")
def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    assert runner.invoke(app, ["init", "--db", url]).exit_code == 0
    key_file = tmp_path / "q2c.sqlite.audit-key"
    key_file.chmod(0o644)
    bad = runner.invoke(app, ["audit", "verify", "--db", url])
    said = one_line(bad.output)
    assert bad.exit_code == 2
    assert "lets others read it" in said and f"chmod 600 {key_file}" in said
    assert "Traceback" not in said and key_file.read_text().strip() not in said


@pytest.mark.usefixtures("no_configured_key")
def test_without_any_key_the_hub_says_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    Runtime.open(url).close()  # a store made before, whose key file has gone
    (tmp_path / "q2c.sqlite.audit-key").unlink()
    bad = runner.invoke(app, ["audit", "verify", "--db", url])
    said = one_line(bad.output)
    assert bad.exit_code == 2
    assert "no audit key: set Q2C_AUDIT_KEY or Q2C_AUDIT_KEY_FILE" in said


def test_short_environment_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("Q2C_AUDIT_KEY", "short")
    bad = runner.invoke(app, ["init", "--db", f"sqlite:///{tmp_path / 'q2c.sqlite'}"])
    assert bad.exit_code == 2 and "at least 16 characters" in one_line(bad.output)
    assert "short" not in one_line(bad.output).replace("at least 16", "")


def test_checkpointer_writes_when_the_head_moves_and_survives_a_dead_destination(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    rt = Runtime.open(f"sqlite:///{tmp_path / 'q2c.sqlite'}", clock=clock)
    rt.checkpoints = FileCheckpoints(tmp_path / "cp.jsonl")
    ticker = Checkpointer(rt, every_seconds=0)

    async def run() -> list[int | None]:
        seqs = []
        for _ in range(2):
            with rt.engine.begin() as conn:
                append_audit(conn, [AuditEntry("maria", "x.done", "e")], clock.now())
            written = await ticker.tick()
            seqs.append(written.seq if written else None)
            again = await ticker.tick()  # head did not move
            seqs.append(again.seq if again else None)
        return seqs

    import asyncio

    assert asyncio.run(run()) == [1, None, 2, None]
    (tmp_path / "blocked").write_text("a file where a folder should be")
    rt.checkpoints = FileCheckpoints(tmp_path / "blocked" / "cp.jsonl")
    with rt.engine.begin() as conn:
        append_audit(conn, [AuditEntry("maria", "x.done", "e")], clock.now())
    with caplog.at_level(logging.WARNING, "quote2cash.audit"):
        assert asyncio.run(ticker.tick()) is None
    assert "audit checkpoint to" in caplog.text and "CheckpointError" in caplog.text
    rt.close()


HUB_GRANTS = """
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {role};
REVOKE DELETE, TRUNCATE ON audit_head FROM {role};
"""


def test_postgres_hub_role_cannot_edit_or_unguard_the_log(pg_url: str, clock: ManualClock) -> None:
    """The role setup of docs/audit.md: the hub appends, and nothing else it tries gets through."""
    owner = Runtime.open(pg_url, clock=clock)
    role = f"q2c_hub_{uuid.uuid4().hex[:8]}"
    with owner.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(HUB_GRANTS.format(role=role))
    base, _, name = pg_url.rpartition("/")
    hub_url = base.replace("postgres@", f"{role}@") + "/" + name
    hub = Runtime(open_engine(hub_url), clock=clock, checkpoints=owner.checkpoints)
    try:
        with hub.engine.begin() as conn:
            append_audit(conn, [AuditEntry("maria", "x.done", "e")], clock.now())
        attempts = {
            "DELETE FROM audit_log": "permission denied",
            "UPDATE audit_log SET actor = 'omar'": "permission denied",
            "TRUNCATE audit_log": "permission denied",
            "UPDATE audit_head SET seq = 0": "forward only",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL": "must be owner",
            "DROP TRIGGER q2c_audit_log_no_change ON audit_log": "must be owner",
            "SET session_replication_role = replica": "permission denied",
        }
        for statement, refusal in attempts.items():
            with pytest.raises(DBAPIError, match=refusal), hub.engine.begin() as conn:
                conn.execute(text(statement))
        from quote2cash.engine.checkpoints import checkpoint_now, verify_store

        checkpoint_now(hub)
        assert verify_store(hub).ok
    finally:
        hub.close()
        with owner.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        owner.close()


@pytest.mark.parametrize("loop", ["worker", "serve without workers"])
def test_running_loops_checkpoint_the_head(tmp_path: Path, clock: ManualClock, loop: str) -> None:
    import asyncio

    from quote2cash.engine.checkpoints import checkpoint_forever
    from quote2cash.engine.registry import Registry
    from quote2cash.engine.worker import Worker

    rt = Runtime.open(f"sqlite:///{tmp_path / 'q2c.sqlite'}", clock=clock)
    rt.checkpoints = FileCheckpoints(tmp_path / "cp.jsonl")
    with rt.engine.begin() as conn:
        append_audit(conn, [AuditEntry("maria", "x.done", f"e{i}") for i in range(3)], clock.now())

    async def run() -> None:
        stop = asyncio.Event()
        if loop == "worker":
            task = asyncio.create_task(Worker(rt, Registry()).run(stop, idle_seconds=0.05))
        else:
            task = asyncio.create_task(checkpoint_forever(rt, stop))
        for _ in range(400):  # the loop's first checkpoint (seq 3), however slow its start
            if (tmp_path / "cp.jsonl").exists() and (tmp_path / "cp.jsonl").read_text():
                break
            await asyncio.sleep(0.025)
        with rt.engine.begin() as conn:  # a decision while the loop runs: caught at stop
            append_audit(conn, [AuditEntry("omar", "x.approved", "e9")], clock.now())
        stop.set()
        await task

    asyncio.run(run())
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "cp.jsonl").read_text().splitlines()]
    assert seqs == [3, 4]
    rt.close()
