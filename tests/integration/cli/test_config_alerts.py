"""``q2c config alerts``: where the shipped Prometheus rules are, their text, and their alerts."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.defaults import packaged_alert_rules

runner = CliRunner()


def test_path_and_content_are_the_packaged_rules_file() -> None:
    rules = packaged_alert_rules()
    assert rules.is_file()
    path = runner.invoke(app, ["config", "alerts", "--path"])
    assert path.exit_code == 0, path.output
    assert path.output == f"{rules}\n"
    content = runner.invoke(app, ["config", "alerts", "--content"])
    assert content.exit_code == 0, content.output
    assert content.output == rules.read_text(encoding="utf-8")


def test_the_alerts_are_listed_with_severity_and_team_as_json_and_table() -> None:
    groups = yaml.safe_load(packaged_alert_rules().read_text(encoding="utf-8"))["groups"]
    expected = [r for g in groups for r in g["rules"] if "alert" in r]
    shown = runner.invoke(app, ["config", "alerts", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert [r["alert"] for r in rows] == [r["alert"] for r in expected]
    finance = next(r for r in rows if r["alert"] == "FinanceEventDeadLettered")
    assert (finance["severity"], finance["team"], finance["for"]) == (
        "page",
        "finance-systems",
        "0s",
    )
    paused = next(r for r in rows if r["alert"] == "SystemPausedTooLong")
    assert (paused["severity"], paused["for"]) == ("ticket", "4h")
    table = runner.invoke(app, ["config", "alerts"])
    assert table.exit_code == 0, table.output
    assert "CircuitBreakerOpen" in table.output
    assert str(packaged_alert_rules()) in table.output.replace("\n", "")
