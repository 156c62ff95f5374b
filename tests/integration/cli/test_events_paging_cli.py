"""``q2c events list`` pages by log position like the API: ``--before`` the last position shown
continues newest first, ``--after`` reads the log forward; both at once is refused."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime

runner = CliRunner()


def test_events_list_pages_by_position(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    runtime = Runtime.open(db, initialise=True, sqlite_synchronous="NORMAL")
    runtime.log.append_many(
        [new_event("billing.invoice.created", f"contract:C-{i}", {"n": i}) for i in range(1, 6)]
    )
    runtime.close()

    def positions(*args: str) -> list[int]:
        result = runner.invoke(app, ["events", "list", "--db", db, *args, "--format", "json"])
        assert result.exit_code == 0, result.output
        return [row["pos"] for row in json.loads(result.stdout)]

    assert positions("--limit", "2") == [5, 4]
    assert positions("--limit", "2", "--before", "4") == [3, 2]
    assert positions("--limit", "3", "--after", "2") == [3, 4, 5]
    refused = runner.invoke(app, ["events", "list", "--db", db, "--after", "1", "--before", "3"])
    assert refused.exit_code != 0 and "--after" in refused.output
