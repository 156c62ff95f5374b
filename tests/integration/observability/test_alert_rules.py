"""The shipped alert rules: ``promtool check rules`` is clean, ``promtool test rules`` passes, and
every alert has a test that fires it and one that does not, on the shared metric names only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import missing_service
from quote2cash.defaults import packaged_alert_rules

UNIT_TESTS = Path(__file__).with_name("alerts_test.yml")

CONTRACT_METRICS = {
    "q2c_system_calls_total",
    "q2c_system_call_seconds",
    "q2c_rate_limit_wait_seconds_total",
    "q2c_rate_limit_tokens_used_total",
    "q2c_breaker_state",
    "q2c_events_handled_total",
    "q2c_event_handle_seconds",
    "q2c_backlog_events",
    "q2c_backlog_oldest_age_seconds",
    "q2c_system_paused",
    "q2c_system_in_maintenance",
    "q2c_events_dead_lettered",
    "q2c_exceptions_open",
    "q2c_order_activation_seconds",
    "q2c_invoice_generation_lag_seconds",
    "q2c_amendments_requested_total",
    "q2c_amendments_failed_total",
    "q2c_amendment_failure_ratio",
    "q2c_bookings_amount",
    "q2c_billings_amount",
    "q2c_collections_amount",
}
HISTOGRAMS = {"q2c_system_call_seconds", "q2c_event_handle_seconds"} | {
    "q2c_order_activation_seconds",
    "q2c_invoice_generation_lag_seconds",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing_service("promtool missing (Debian's prometheus package; make test installs it)")
    assert found is not None
    return found


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(packaged_alert_rules().read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def run(promtool: str, *args: str | Path) -> str:
    done = subprocess.run(
        [promtool, *(str(a) for a in args)], capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_promtool_check_rules_is_clean(promtool: str) -> None:
    output = run(promtool, "check", "rules", packaged_alert_rules())
    assert f"SUCCESS: {len(rules())} rules found" in output
    assert "WARNING" not in output.upper(), output


def test_promtool_unit_tests_pass_on_the_packaged_rules(promtool: str, tmp_path: Path) -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    tests["rule_files"] = [str(packaged_alert_rules())]
    copy = tmp_path / "alerts_test.yml"
    copy.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    output = run(promtool, "test", "rules", copy)
    assert "SUCCESS" in output
    assert "FAILED" not in output


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    checks = [
        check
        for case in yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
        for check in case.get("alert_rule_test", [])
    ]
    for alert in alerts():
        mine = [c for c in checks if c["alertname"] == alert["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{alert['alert']} is never shown firing"
        assert any(not c["exp_alerts"] for c in mine), f"{alert['alert']} is never shown quiet"


def test_alerts_carry_severity_team_and_what_to_do() -> None:
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    for alert in alerts():
        assert alert["labels"]["severity"] in {"page", "ticket"}, alert["alert"]
        assert alert["labels"]["team"] in {
            "finance-systems",
            "revenue-operations",
            "it-operations",
        }, alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        assert "q2c " in alert["annotations"]["description"], alert["alert"]
    severity = {a["alert"]: a["labels"]["severity"] for a in alerts()}
    assert severity["FinanceEventDeadLettered"] == "page"
    assert severity["OperationalEventDeadLettered"] == "ticket"


def test_rules_use_only_the_shared_metric_names() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        for name in re.findall(r"\bq2c[_:][a-z0-9_:]+", rule["expr"]):
            if ":" in name:
                assert name in recorded, f"{name} is not recorded by these rules"
                continue
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if base != name:
                assert base in HISTOGRAMS, name
            assert base in CONTRACT_METRICS, f"{name} is not a metric of the shared contract"
