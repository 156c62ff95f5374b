"""Daily API allocation: /limits, the Sforce-Limit-Info header, and exhaustion."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceRefusedRequest

from .conftest import admin, password_login


def test_limits_and_usage_header(sf: Salesforce):
    first = sf.restful("limits")["DailyApiRequests"]
    assert first["Max"] == 15000
    assert first["Remaining"] == 15000 - 1
    accounts = sf.Account
    accounts.create({"Name": "Counted"})
    usage = accounts.api_usage["api-usage"]
    assert (usage.used, usage.total) == (2, 15000)
    assert sf.restful("limits")["DailyApiRequests"]["Remaining"] == 15000 - 3


def test_daily_allocation_exhausted_is_403(sf: Salesforce, http, emulator):
    admin(http, emulator, "PATCH", "config", {"daily_api_limit": 3})
    for _ in range(3):
        sf.query("SELECT COUNT() FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as excinfo:
        sf.query("SELECT COUNT() FROM Account")
    assert excinfo.value.status == 403
    assert excinfo.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    admin(http, emulator, "POST", "clock", {"advance_seconds": 86400})
    token = password_login(http, emulator)["access_token"]
    next_day = Salesforce(instance_url=emulator.instance_url, session_id=token, session=http)
    assert next_day.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    assert next_day.api_usage["api-usage"].used == 1


def test_admin_config_names_the_bad_key(http, emulator):
    url = f"{emulator.instance_url}/_emulator/config"
    unknown = http.patch(url, json={"daily_limit": 5})
    assert unknown.status_code == 400 and "daily_limit" in unknown.json()["error"]
    wrong_type = http.patch(url, json={"daily_api_limit": "many"})
    assert wrong_type.status_code == 400 and "daily_api_limit" in wrong_type.json()["error"]
    shown = http.get(url).json()
    assert shown["daily_api_limit"] == 15000 and "callout_secret" not in shown


def test_usage_counts_calls_over_the_day_and_over_a_rate_budget(sf: Salesforce, http, emulator):
    # 2 calls allowed in any 100 s (burst 1 + 0.01/s x 100 s): the same on a slow machine
    budget = {"budget_rate": 0.01, "budget_burst": 1, "budget_window_seconds": 100}
    admin(http, emulator, "PATCH", "config", {"daily_api_limit": 3, **budget})
    for _ in range(3):
        sf.query("SELECT COUNT() FROM Account")
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT COUNT() FROM Account")
    usage = admin(http, emulator, "GET", "usage")
    assert (usage["over_daily_limit"], usage["api_usage"], usage["daily_api_limit"]) == (1, 3, 3)
    assert usage["budget_calls"] == 4 and usage["over_budget"] == 2
    bad = http.patch(f"{emulator.instance_url}/_emulator/config", json={"budget_rate": -1})
    assert bad.status_code == 400 and "budget_rate" in bad.json()["error"]
