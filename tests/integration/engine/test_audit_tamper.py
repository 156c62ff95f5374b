"""Forgeries by a database writer without the audit key, each caught by `q2c audit verify`.

Each test writes a real log, checkpoints it to a file outside the store, forges as a writer who
can switch the PostgreSQL guard off, and runs the CLI's verify on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.audit import GENESIS, AuditEntry, _digest, append_audit, canonical_json
from quote2cash.engine.audit_key import AuditKey
from quote2cash.engine.checkpoints import checkpoint_now, sign_checkpoint
from quote2cash.engine.checkpoints_file import FileCheckpoints
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import audit_head, audit_log
from support.forger import forging

runner = CliRunner()


@pytest.fixture
def checkpoint_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "outside" / "checkpoints.jsonl"
    monkeypatch.setenv("Q2C_AUDIT_CHECKPOINT_FILE", str(path))
    return path


@pytest.fixture
def hub(db_url: str, checkpoint_file: Path, clock: ManualClock) -> Iterator[Runtime]:
    rt = Runtime.open(db_url, clock=clock, sqlite_synchronous="NORMAL")
    yield rt
    rt.close()


def record(rt: Runtime, count: int, *, commits: int = 3) -> None:
    for c in range(commits):
        entries = [
            AuditEntry("maria", "replay.requested", f"req-{c}-{i}", "corr-1", {"n": i})
            for i in range(count // commits)
        ]
        with rt.engine.begin() as conn:
            append_audit(conn, entries, rt.clock.now())


def verify(db_url: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["audit", "verify", "--db", db_url, "--format", "json"])
    return result.exit_code, json.loads(result.stdout)


def verify_line(db_url: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", "--db", db_url])
    return result.exit_code, " ".join(result.output.split())


def rows(rt: Runtime) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.seq))]


def test_clean_log_passes_and_names_key_and_checkpoints(hub: Runtime, db_url: str) -> None:
    record(hub, 9)
    checkpoint_now(hub)
    code, report = verify(db_url)
    assert code == 0, report
    assert report["ok"] is True and report["entries_verified"] == 9
    assert report["key_id"] == hub.audit_key.key_id
    assert "checkpoints.jsonl" in str(report["checkpoints"])
    assert report["last_checkpoint_entry"] == 9 and report["last_checkpoint_at"]
    code, line = verify_line(db_url)
    assert code == 0 and "intact" in line and "9 entries" in line


def test_edited_row_is_named(hub: Runtime, db_url: str) -> None:
    record(hub, 9)
    with forging(hub.engine) as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 5).values(actor="omar"))
    code, report = verify(db_url)
    assert code == 1
    assert report["first_broken_entry"] == 5 and "edited" in str(report["reason"])
    code, line = verify_line(db_url)
    assert code == 1 and "broken at entry 5" in line and "edited" in line
    assert line.startswith("error: audit log broken") and "Traceback" not in line


@pytest.mark.parametrize("forger_key", ["guessed", "own"])
def test_edited_and_recomputed_chain_without_the_key(
    hub: Runtime, db_url: str, forger_key: str
) -> None:
    """The forger edits entry 4 and re-signs it and every later entry, head included."""
    record(hub, 9)
    checkpoint_now(hub)
    record(hub, 3, commits=1)
    guess = AuditKey(b"a-key-the-forger-made-up")
    key_id = hub.audit_key.key_id if forger_key == "guessed" else guess.key_id
    forged = rows(hub)
    prev = forged[2]["hash"]
    with forging(hub.engine) as conn:
        for row in forged[3:]:
            actor = "omar" if row["seq"] == 4 else str(row["actor"])
            entry = AuditEntry(actor, str(row["action"]), row["entity"], row["correlation_id"])  # type: ignore[arg-type]
            digest = _digest(
                guess, str(prev), int(row["seq"]), row["at"], entry, str(row["details"])
            )  # type: ignore[arg-type]
            conn.execute(
                update(audit_log)
                .where(audit_log.c.seq == row["seq"])
                .values(actor=actor, prev_hash=prev, hash=digest, key_id=key_id)
            )
            prev = digest
        conn.execute(update(audit_head).values(hash=prev))
    code, report = verify(db_url)
    assert code == 1 and report["first_broken_entry"] == 4
    expected = "edited" if forger_key == "guessed" else f"signed with key {guess.key_id}"
    assert expected in str(report["reason"])


def test_truncation_with_reset_head_is_caught_by_the_checkpoint(hub: Runtime, db_url: str) -> None:
    record(hub, 9)
    checkpoint_now(hub)
    kept = rows(hub)[5]
    with forging(hub.engine) as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq > 6))
        conn.execute(update(audit_head).values(seq=kept["seq"], hash=kept["hash"]))
    code, report = verify(db_url)
    assert code == 1 and report["entries_verified"] == 6
    assert report["first_broken_entry"] == 7
    assert "entries 7..9 were removed (truncated" in str(report["reason"])


def test_renumbered_chain_is_caught(hub: Runtime, db_url: str) -> None:
    record(hub, 9)
    checkpoint_now(hub)
    with forging(hub.engine) as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 3))
        for seq in range(4, 10):
            conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(seq=seq - 1))
        last = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == 8)).scalar_one()
        conn.execute(update(audit_head).values(seq=8, hash=last))
    code, report = verify(db_url)
    assert code == 1 and report["first_broken_entry"] == 3
    assert "prev_hash" in str(report["reason"])


def test_wiped_log_and_head_is_caught(hub: Runtime, db_url: str) -> None:
    record(hub, 6)
    checkpoint_now(hub)
    with forging(hub.engine) as conn:
        conn.execute(delete(audit_log))
        conn.execute(update(audit_head).values(seq=0, hash=GENESIS))
    code, report = verify(db_url)
    assert code == 1 and report["entries_verified"] == 0
    assert "entries 1..6 were removed (wiped" in str(report["reason"])


def test_deleted_checkpoint_file_is_caught(
    hub: Runtime, db_url: str, checkpoint_file: Path
) -> None:
    record(hub, 6)
    checkpoint_now(hub)
    assert checkpoint_file.stat().st_mode & 0o777 == 0o600
    checkpoint_file.unlink()
    code, report = verify(db_url)
    assert code == 1 and "no checkpoint of this store" in str(report["reason"])


def test_checkpoint_from_another_key_is_caught(
    hub: Runtime, db_url: str, checkpoint_file: Path, clock: ManualClock
) -> None:
    record(hub, 6)
    with hub.engine.connect() as conn:
        store_id, seq, head_hash = conn.execute(
            select(audit_head.c.store_id, audit_head.c.seq, audit_head.c.hash)
        ).one()
    other = AuditKey(b"someone-elses-audit-key")
    from quote2cash.engine.audit import AuditHead
    from quote2cash.engine.checkpoints import run_sync

    forged = sign_checkpoint(other, AuditHead(store_id, seq, head_hash), clock.now())
    run_sync(FileCheckpoints(checkpoint_file).append(forged))
    code, report = verify(db_url)
    assert code == 1
    assert f"signed with key {other.key_id}" in str(report["reason"])
    assert "another key" in str(report["reason"])


def test_checkpoint_with_a_forged_signature_is_caught(
    hub: Runtime, db_url: str, checkpoint_file: Path
) -> None:
    record(hub, 6)
    cp = checkpoint_now(hub)
    line = json.loads(checkpoint_file.read_text().splitlines()[-1])
    line["seq"] = 3
    with checkpoint_file.open("a") as out:
        out.write(canonical_json(line) + "\n")
    assert cp.seq == 6
    code, report = verify(db_url)
    assert code == 1 and "does not hold its signature" in str(report["reason"])


def test_wrong_key_is_told_apart_from_an_edit(
    hub: Runtime, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(hub, 3)
    checkpoint_now(hub)
    monkeypatch.setenv("Q2C_AUDIT_KEY", "a-different-key-for-this-hub")
    code, report = verify(db_url)
    assert code == 1
    assert "wrong key" in str(report["reason"]) or "another key" in str(report["reason"])
    assert hub.audit_key.key_id in str(report["reason"])


def test_missing_head_row_is_caught(hub: Runtime, db_url: str) -> None:
    record(hub, 3)
    checkpoint_now(hub)
    with forging(hub.engine) as conn:
        conn.execute(delete(audit_head))
    code, report = verify(db_url)
    assert code == 1 and "head row is missing" in str(report["reason"])


def test_new_store_is_sealed_at_genesis(hub: Runtime, checkpoint_file: Path) -> None:
    first = json.loads(checkpoint_file.read_text().splitlines()[0])
    assert first["seq"] == 0 and first["hash"] == GENESIS
    assert first["key_id"] == hub.audit_key.key_id
    assert "quote2cash-tests-audit-key" not in checkpoint_file.read_text()


def test_postgres_guard_refuses_edits_and_a_backwards_head(hub: Runtime) -> None:
    if hub.engine.dialect.name != "postgresql":
        pytest.skip("the append-only guard is PostgreSQL's (SQLite has no roles)")
    record(hub, 3)
    refused = [
        "UPDATE audit_log SET actor = 'omar' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 3",
        "TRUNCATE audit_log",
        "UPDATE audit_head SET seq = 1",
        "UPDATE audit_head SET store_id = 'another'",
        "DELETE FROM audit_head",
        "TRUNCATE audit_head",
    ]
    for statement in refused:
        with (
            pytest.raises(DBAPIError, match=r"append-only|forward only|refused"),
            hub.engine.begin() as conn,
        ):
            conn.execute(text(statement))
    record(hub, 3, commits=1)  # appending still works
    assert len(rows(hub)) == 6
