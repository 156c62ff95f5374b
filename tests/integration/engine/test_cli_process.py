"""The installed ``q2c`` command as an operator runs it: real processes, real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from quote2cash.engine.events import new_event
from quote2cash.engine.queries import list_events
from quote2cash.engine.runtime import Runtime

Q2C = [sys.executable, "-m", "quote2cash.cli"]


def run(*args: str, db: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "Q2C_DATABASE_URL": db,
        "PYTHONPATH": str(Path(__file__).parents[2]),
        **(env or {}),
    }
    return subprocess.run([*Q2C, *args], capture_output=True, text=True, env=full_env, timeout=60)


def test_init_worker_and_logs_carry_the_correlation_id(db_url: str) -> None:
    assert run("init", db=db_url).returncode == 0
    rt = Runtime.open(db_url, initialise=False)
    rt.log.append(
        new_event(
            "crm.opportunity.closed_won", "deal-42", {"seats": 5}, correlation_id="corr-deal-42"
        )
    )
    done = run(
        "worker",
        "--once",
        "--handlers",
        "support.cli_handlers:registry",
        db=db_url,
        env={"Q2C_LOG_FORMAT": "json"},
    )
    assert done.returncode == 0, done.stderr
    assert "processed 2 events" in done.stdout  # the follow-up came through the outbox
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    handled = [ln for ln in lines if ln["logger"] == "quote2cash.test.handlers"]
    assert len(handled) == 2
    assert {ln["correlation_id"] for ln in handled} == {"corr-deal-42"}
    assert {ln["subject"] for ln in handled} == {"deal-42"}
    rows = list_events(rt, correlation_id="corr-deal-42")
    assert [r.type for r in rows] == [
        "billing.subscription.requested",
        "crm.opportunity.closed_won",
    ]
    assert all(r.status == "done" for r in rows)
    rt.close()


def test_uninitialised_store_and_bad_handlers_are_clear_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    r = run("dlq", "list", db=db)
    assert r.returncode == 2 and "q2c init" in r.stderr
    assert run("init", db=db).returncode == 0
    r = run("worker", "--once", "--handlers", "no.such.module:registry", db=db)
    assert r.returncode == 2 and "cannot load a registry" in r.stderr


def test_engine_demo_runs_and_reconciles(tmp_path: Path) -> None:
    """`q2c demo --engine-only`: held ERP work, an exception, a two-person replay, audit."""
    done = subprocess.run(
        [*Q2C, "demo", "--engine-only", "--quick", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cannot also decide it" in done.stdout  # the requester was refused
    assert "audit log" in done.stdout and "intact" in done.stdout
