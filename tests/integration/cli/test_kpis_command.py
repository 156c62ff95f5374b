"""``q2c kpis``: the store's KPIs of the last span as tables, or ``KpiReport.to_json()``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from support.kpi_scenario import History

runner = CliRunner()


async def test_kpis_of_the_last_day_as_json_and_as_tables(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    now = datetime.now(UTC)
    clock = ManualClock(now - timedelta(hours=30))
    runtime = Runtime.open(db, clock=clock, sqlite_synchronous="NORMAL")
    try:
        h = History(runtime, clock)
        old = await h.deal(1, now - timedelta(hours=30), "US")
        recent = [await h.deal(n, now - timedelta(hours=5, minutes=n), "DE") for n in (2, 3, 4)]
        await h.invoice(old, 1, now - timedelta(hours=29))
    finally:
        runtime.close()

    result = runner.invoke(app, ["kpis", "--db", db, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {(r["entity"], r["stage"], r["count"]) for r in report["activation"]} == {
        ("DE", "billing", 3),
        ("DE", "erp", 3),
    }
    [row] = report["money"]
    booked = sum((sum(d.lines, Decimal(0)) for d in recent), Decimal(0))
    assert (row["entity"], row["currency"], Decimal(row["bookings"])) == ("DE", "EUR", booked)
    assert len(report["series"]) == 24

    wider = runner.invoke(app, ["kpis", "--db", db, "--since", "2d", "--format", "json"])
    counts = {(r["entity"], r["stage"]): r["count"] for r in json.loads(wider.output)["activation"]}
    assert counts[("US", "erp")] == 1
    p95 = max(d.billing_after for d in recent)
    assert json.loads(wider.output)["activation"][0]["p95"] == p95

    table = runner.invoke(app, ["kpis", "--db", db, "--since", "2d"])
    assert table.exit_code == 0, table.output
    assert "order activation" in table.output and "money moved" in table.output
    assert str(sum(old.lines, Decimal(0))) in table.output

    refused = runner.invoke(app, ["kpis", "--db", db, "--since", "last week"])
    assert refused.exit_code == 2 and "--since 'last week'" in refused.output
