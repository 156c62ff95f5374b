"""A decision taken with the CLI is sealed by an audit checkpoint before the command exits, so
removing it later (rows deleted, head reset) is caught even when no worker ever ran."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

NEW_PASSWORD = "correct-horse-battery-9"


def q2c(
    folder: Path, *args: str, stdin: str = "", token: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "Q2C_DATABASE_URL": f"sqlite:///{folder / 'q2c.sqlite'}"}
    env.pop("Q2C_TOKEN", None)
    if token:
        env["Q2C_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "quote2cash.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=120,
    )


def test_removing_a_cli_decision_is_caught_without_a_worker(tmp_path: Path) -> None:
    init = q2c(tmp_path, "init")
    assert init.returncode == 0, init.stderr
    one_time = init.stdout.strip().splitlines()[-1]
    changed = q2c(
        tmp_path,
        "operators", "password", "admin", "--password-stdin",
        stdin=f"{one_time}\n{NEW_PASSWORD}\n",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    issued = q2c(
        tmp_path,
        "tokens", "create", "admin-cli", "--operator", "admin", "--password-stdin",
        stdin=f"{NEW_PASSWORD}\n",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    added = q2c(tmp_path, "operators", "add", "olga", "--role", "operator", token=token)
    assert added.returncode == 0, added.stderr
    intact = q2c(tmp_path, "audit", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr

    with sqlite3.connect(tmp_path / "q2c.sqlite") as db:
        (last,) = db.execute("SELECT max(seq) FROM audit_log").fetchone()
        (action,) = db.execute("SELECT action FROM audit_log WHERE seq = ?", (last,)).fetchone()
        assert action == "operator.added"
        (before,) = db.execute("SELECT hash FROM audit_log WHERE seq = ?", (last - 1,)).fetchone()
        db.execute("DELETE FROM audit_log WHERE seq = ?", (last,))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?", (last - 1, before))

    forged = q2c(tmp_path, "audit", "verify")
    assert forged.returncode == 1
    assert f"entries {last}..{last} were removed" in forged.stdout + forged.stderr
