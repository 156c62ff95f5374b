"""``q2c usage ingest|batches|watch|quarantine ...``: receipts as tables or JSON, quarantine
worked by the owner of ``--token`` (a viewer is refused), one-line errors, the drop folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.runtime import Runtime
from support.identity import first_admin, new_operator, token_of
from support.usage_terms import log_subscription

runner = CliRunner()
ENV = {"COLUMNS": "300"}


def store(tmp_path: Path) -> tuple[str, dict[str, str]]:
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    runtime = Runtime.open(db, sqlite_synchronous="NORMAL")
    try:
        log_subscription(runtime, current_period_start=datetime(2026, 3, 15, tzinfo=UTC))
        admin = first_admin(runtime)
        tokens = {
            "olga": token_of(runtime, new_operator(runtime, admin, "olga", "operator")),
            "vic": token_of(runtime, new_operator(runtime, admin, "vic", "viewer")),
        }
    finally:
        runtime.close()
    return db, tokens


def usage_file(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def q2c(*args: str) -> Any:
    return runner.invoke(app, list(args), env=ENV)


def test_ingest_batches_and_quarantine_round_trip(tmp_path: Path) -> None:
    db, tokens = store(tmp_path)
    rows = [
        {
            "id": "a",
            "subscription": "C-1",
            "meter": "api_calls",
            "quantity": "4",
            "timestamp": "2026-03-20T10:00:00Z",
        },
        {
            "id": "b",
            "subscription": "C-1",
            "meter": "api_calls",
            "quantity": "four",
            "timestamp": "2026-03-20T10:00:00Z",
        },
    ]
    path = usage_file(tmp_path / "u.jsonl", rows)
    done = q2c("usage", "ingest", str(path), "--source", "meterd", "--db", db, "--format", "json")
    assert done.exit_code == 0, done.output
    [receipt] = json.loads(done.output)
    assert (receipt["accepted"], receipt["quarantined"]) == (1, 1)
    again = q2c("usage", "ingest", str(path), "--source", "meterd", "--db", db, "--format", "json")
    assert json.loads(again.output)[0]["duplicate"] == 1

    listed = q2c("usage", "batches", "--db", db, "--format", "json")
    assert [b["batch_id"] for b in json.loads(listed.output)][-1] == receipt["batch_id"]
    assert "meterd" in q2c("usage", "batches", "--db", db).output

    held = json.loads(q2c("usage", "quarantine", "list", "--db", db, "--format", "json").output)
    assert len(held) == 2 and all(h["field"] == "quantity" for h in held)
    ident = str(held[0]["id"])
    shown = json.loads(
        q2c("usage", "quarantine", "show", ident, "--db", db, "--format", "json").output
    )
    assert shown["raw"]["quantity"] == "four"

    refused = q2c(
        "usage", "quarantine", "correct", ident, "quantity=4", "--db", db, "--token", tokens["vic"]
    )
    assert refused.exit_code != 0 and "operator role" in refused.output
    missing = q2c("usage", "quarantine", "correct", ident, "quantity=4", "--db", db)
    assert missing.exit_code != 0 and "API token" in missing.output
    bad = q2c(
        "usage", "quarantine", "correct", ident, "quantity", "--db", db, "--token", tokens["olga"]
    )
    assert bad.exit_code != 0 and "FIELD=VALUE" in bad.output
    fixed = q2c(
        "usage",
        "quarantine",
        "correct",
        ident,
        "quantity=4",
        "--note",
        "spelled out",
        "--db",
        db,
        "--token",
        tokens["olga"],
        "--format",
        "json",
    )
    assert fixed.exit_code == 0, fixed.output
    sent = q2c(
        "usage",
        "quarantine",
        "resubmit",
        ident,
        "--db",
        db,
        "--token",
        tokens["olga"],
        "--format",
        "json",
    )
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output)[0]["accepted"] == 1
    left = json.loads(q2c("usage", "quarantine", "list", "--db", db, "--format", "json").output)
    assert [h["id"] for h in left] == [held[1]["id"]]


def test_watch_once_ingests_and_moves_dropped_files(tmp_path: Path) -> None:
    db, _ = store(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    usage_file(
        drop / "one.jsonl",
        [
            {
                "id": "w1",
                "subscription": "C-1",
                "meter": "api_calls",
                "quantity": "1",
                "timestamp": "2026-03-21T00:00:00Z",
            }
        ],
    )
    (drop / "notes.txt.bak").write_text("not usage")
    done = q2c("usage", "watch", str(drop), "--once", "--db", db, "--format", "json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)[0]["accepted"] == 1
    assert (drop / "done" / "one.jsonl").exists() and not (drop / "one.jsonl").exists()
    assert (drop / "notes.txt.bak").exists()


def test_unreadable_file_is_a_one_line_error(tmp_path: Path) -> None:
    db, _ = store(tmp_path)
    done = q2c("usage", "ingest", str(tmp_path / "missing.csv"), "--db", db)
    assert done.exit_code == 1 and "no such file" in done.output
    odd = tmp_path / "usage.xlsx"
    odd.write_text("x")
    done = q2c("usage", "ingest", str(odd), "--db", db)
    assert done.exit_code == 1 and "unknown usage file format" in done.output
