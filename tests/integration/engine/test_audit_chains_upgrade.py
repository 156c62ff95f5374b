"""A store whose log was written before chains (schema 0012) verifies unchanged after 0013."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, String, Text, column, select, table, text
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.audit import (
    GENESIS,
    MAIN_CHAIN,
    AuditEntry,
    AuditHead,
    _digest,
    append_audit,
    canonical_json,
    worker_chain,
)
from quote2cash.engine.audit_key import configured_key
from quote2cash.engine.checkpoints import checkpoint_now, run_sync, sign_checkpoint
from quote2cash.engine.checkpoints_file import FileCheckpoints
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.store.db import migrate, open_engine
from quote2cash.store.schema import audit_log
from quote2cash.store.types import UtcDateTime

runner = CliRunner()

# audit_log as schema 0012 had it: no chain, no id, seq the key.
OLD_LOG = table(
    "audit_log",
    column("seq", BigInteger),
    column("at", UtcDateTime()),
    column("actor", String),
    column("action", String),
    column("entity", String),
    column("correlation_id", String),
    column("details", Text),
    column("prev_hash", String),
    column("hash", String),
    column("key_id", String),
)


@pytest.fixture
def checkpoint_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "outside" / "checkpoints.jsonl"
    monkeypatch.setenv("Q2C_AUDIT_CHECKPOINT_FILE", str(path))
    return path


def write_old_store(url: str, clock: ManualClock, checkpoint_file: Path, count: int) -> None:
    """Migrate to 0012 and write ``count`` entries and a checkpoint as the 0012 code did."""
    engine = open_engine(url)
    migrate(engine, "0012")
    key = configured_key(url)
    assert key is not None
    prev = GENESIS
    with engine.begin() as conn:
        for seq in range(1, count + 1):
            entry = AuditEntry("maria", "replay.requested", f"req-{seq}", "corr-1")
            details = canonical_json({"n": seq})
            digest = _digest(key, prev, seq, clock.now(), entry, details)
            conn.execute(
                OLD_LOG.insert().values(
                    seq=seq,
                    at=clock.now(),
                    actor=entry.actor,
                    action=entry.action,
                    entity=entry.entity,
                    correlation_id=entry.correlation_id,
                    details=details,
                    prev_hash=prev,
                    hash=digest,
                    key_id=key.key_id,
                )
            )
            prev = digest
        conn.execute(
            text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"seq": count, "hash": prev},
        )
        store_id = conn.execute(text("SELECT store_id FROM audit_head WHERE id = 1")).scalar_one()
    checkpoint = sign_checkpoint(key, AuditHead(store_id, count, prev), clock.now())
    run_sync(FileCheckpoints(checkpoint_file).append(checkpoint))
    engine.dispose()


def verify(db_url: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["audit", "verify", "--db", db_url, "--format", "json"])
    return result.exit_code, json.loads(result.stdout)


def test_a_log_written_before_chains_verifies_after_the_upgrade(
    db_url: str, checkpoint_file: Path, clock: ManualClock
) -> None:
    write_old_store(db_url, clock, checkpoint_file, 5)
    rt = Runtime.open(db_url, clock=clock)  # migrates 0012 -> head
    try:
        code, report = verify(db_url)
        assert code == 0, report
        assert report["chains"] == {MAIN_CHAIN: 5} and report["last_checkpoint_entry"] == 5
        with rt.engine.connect() as conn:
            moved = conn.execute(select(audit_log.c.id, audit_log.c.seq, audit_log.c.chain)).all()
        assert sorted(moved) == [(s, s, MAIN_CHAIN) for s in range(1, 6)]

        with rt.engine.begin() as conn:
            append_audit(
                conn, [AuditEntry("engine", "x.done", "e1")], clock.now(), chain=worker_chain("w1")
            )
        with rt.engine.begin() as conn:
            append_audit(conn, [AuditEntry("maria", "replay.approved", "req-1")], clock.now())
            ids = conn.execute(select(audit_log.c.id).order_by(audit_log.c.id)).scalars().all()
        assert ids == list(range(1, 8))  # new ids continue after the migrated ones
        checkpoint_now(rt)
        code, report = verify(db_url)
        assert code == 0, report
        assert report["chains"] == {MAIN_CHAIN: 7, worker_chain("w1"): 1}
    finally:
        rt.close()


def test_downgrade_keeps_a_main_only_log_and_refuses_partition_entries(
    db_url: str, checkpoint_file: Path, clock: ManualClock
) -> None:
    from alembic import command

    from quote2cash.engine.audit import verify_audit
    from quote2cash.store.db import _alembic_config, current_revision

    rt = Runtime.open(db_url, clock=clock)
    try:
        with rt.engine.begin() as conn:
            entries = [AuditEntry("maria", "x.done", f"e{i}") for i in range(3)]
            append_audit(conn, entries, clock.now())
        command.downgrade(_alembic_config(rt.engine), "0012")
        with rt.engine.connect() as conn:
            assert conn.execute(text("SELECT id, seq FROM audit_head")).all() == [(1, 3)]
        migrate(rt.engine)
        assert verify_audit(rt.engine).ok
        with rt.engine.begin() as conn:
            append_audit(conn, [AuditEntry("engine", "x.done", "w")], clock.now(), chain="worker:w")
        head = current_revision(rt.engine)
        with pytest.raises(RuntimeError, match="1 entries of partition chains"):
            command.downgrade(_alembic_config(rt.engine), "0012")
        # later migrations may have been undone (one transaction per migration on SQLite), 0013 not
        assert current_revision(rt.engine) in {head, "0013"}
        assert verify_audit(rt.engine).chains == {MAIN_CHAIN: 3, "worker:w": 1}
    finally:
        rt.close()
