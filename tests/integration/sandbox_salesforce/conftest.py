"""One emulator per test session (HTTPS, own thread), reset before every test.

Clients use ``trust_env = False`` so REQUESTS_CA_BUNDLE in the environment cannot override
the emulator's CA (requests prefers the environment bundle over ``Session.verify``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from quote2cash.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    RunningEmulator,
    run_in_thread,
)

if os.environ.get("Q2C_REQUIRE_SERVICES") == "1":
    import simple_salesforce  # noqa: F401  (fail loudly when required)
else:
    pytest.importorskip("simple_salesforce", reason="simple-salesforce (dev extra) not installed")

from simple_salesforce import Salesforce

DEFAULTS: dict[str, Any] = {
    "daily_api_limit": 15000,
    "session_ttl_seconds": 7200,
    "query_batch_size": 2000,
    "callout_url": None,
    "callout_secret": None,
    "callout_max_attempts": 5,
    "callout_backoff_seconds": 0.5,
}


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    running = run_in_thread()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def http(emulator: RunningEmulator) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator.ca_path
    yield session
    session.close()


def admin(
    http: requests.Session,
    emulator: RunningEmulator,
    method: str,
    action: str,
    body: dict[str, Any] | None = None,
) -> Any:
    response = http.request(method, f"{emulator.instance_url}/_emulator/{action}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(autouse=True)
def clean(http: requests.Session, emulator: RunningEmulator) -> None:
    admin(http, emulator, "POST", "reset")
    admin(http, emulator, "PATCH", "config", DEFAULTS)


def password_login(http: requests.Session, emulator: RunningEmulator) -> dict[str, Any]:
    response = http.post(
        f"{emulator.instance_url}/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def sf(http: requests.Session, emulator: RunningEmulator) -> Salesforce:
    token = password_login(http, emulator)
    return Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"], session=http
    )
