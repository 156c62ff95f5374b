"""`q2c archive`, `archive restore` and the replay of a restored finance event, as an operator
runs them: real processes on a real store, `q2c audit verify` green at every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from quote2cash.engine.events import new_event
from quote2cash.engine.queries import list_events
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from support.identity import new_operator, token_of

Q2C = [sys.executable, "-m", "quote2cash.cli"]
HANDLERS = "support.retention_handlers:registry"


def run(*args: str, db: str, archive: Path, token: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "Q2C_DATABASE_URL": db,
        "Q2C_ARCHIVE_DIR": str(archive),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    env.pop("Q2C_TOKEN", None)
    if token:
        env["Q2C_TOKEN"] = token
    return subprocess.run([*Q2C, *args], capture_output=True, text=True, env=env, timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_archive_restore_then_replay_a_finance_event(db_url: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive"

    def q2c(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
        return run(*args, db=db_url, archive=archive, token=token)

    ok(q2c("init"))
    rt = Runtime.open(db_url, initialise=False)
    admin = Operator("admin", frozenset({"admin"}), via="password")  # `q2c init` made it
    maria = new_operator(rt, admin, "maria", "operator")
    omar = new_operator(rt, admin, "omar", "operator")
    fiona = new_operator(rt, admin, "fiona", "finance_approver")
    old = datetime.now(UTC) - timedelta(days=3700)
    rt.log.append(
        new_event("billing.invoice.finalized", "inv-7", {"total": "120.00"}, id="inv-7-final",
                  correlation_id="corr-inv-7", time=old)
    )  # fmt: skip
    rt.log.append(new_event("crm.account.updated", "acct-1", id="recent", time=datetime.now(UTC)))
    ok(q2c("worker", "--once", "--handlers", HANDLERS))
    ok(q2c("audit", "verify"))

    dry = json.loads(ok(q2c("archive", "--dry-run", "--format", "json")))
    assert (dry["dry_run"], dry["events"], dry["finance_events"], dry["run_id"]) == (
        True, 1, 1, None,
    )  # fmt: skip
    summary = json.loads(ok(q2c("archive", "--format", "json")))
    assert (summary["events"], summary["steps"], summary["finance_events"]) == (1, 1, 1)
    assert Path(summary["file"]).parent == archive
    assert [e.id for e in list_events(rt)] == ["recent"]
    ok(q2c("audit", "verify"))

    [listed] = json.loads(ok(q2c("archive", "list", "--format", "json")))
    assert listed["id"] == summary["run_id"] and listed["restored_at"] is None
    restored = json.loads(ok(q2c("archive", "restore", summary["run_id"], "--format", "json")))
    assert restored["events"] == 1 and restored["audit_entries_checked"] >= 1
    [back] = [e for e in list_events(rt) if e.id == "inv-7-final"]
    assert back.status == "done"
    ok(q2c("audit", "verify"))

    requested = ok(
        q2c("replay", "request", "--event-id", "inv-7-final", "--include-processed",
            "--reason", "re-post after restore", token=token_of(rt, maria))
    )  # fmt: skip
    assert "finance-sensitive" in requested
    request_id = requested.split("replay request ")[1].split()[0]
    refused = q2c("replay", "approve", request_id, token=token_of(rt, omar))
    assert refused.returncode != 0 and "finance_approver" in refused.stderr
    ok(q2c("replay", "approve", request_id, token=token_of(rt, fiona)))
    ok(q2c("worker", "--once", "--handlers", HANDLERS))
    rerun = [e for e in list_events(rt, subject="inv-7") if e.source == "q2c.replay"]
    assert [(e.status, e.sequence) for e in rerun] == [("done", 2)]
    ok(q2c("audit", "verify"))
    rt.close()


def test_a_tampered_archive_is_refused_naming_the_file(db_url: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    ok(run("init", db=db_url, archive=archive))
    rt = Runtime.open(db_url, initialise=False)
    rt.log.append(
        new_event("crm.account.updated", "acct-2", id="a2",
                  time=datetime.now(UTC) - timedelta(days=200))
    )  # fmt: skip
    rt.log.append(new_event("crm.account.updated", "acct-3", id="recent"))
    rt.close()
    ok(run("worker", "--once", "--handlers", HANDLERS, db=db_url, archive=archive))
    summary = json.loads(ok(run("archive", "--format", "json", db=db_url, archive=archive)))
    path = Path(summary["file"])
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))
    refused = run("archive", "restore", str(path), db=db_url, archive=archive)
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert path.name in message and "does not match the manifest" in message
    ok(run("audit", "verify", db=db_url, archive=archive))
