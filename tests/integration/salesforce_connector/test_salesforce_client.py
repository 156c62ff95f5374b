"""SalesforceClient against the emulator: logins, session renewal, paging, usage, error mapping."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from quote2cash.connectors.salesforce import (
    AuthFlow,
    DailyLimitExceeded,
    SalesforceClient,
    SalesforceConfig,
)
from quote2cash.connectors.salesforce.client import daily_limit_retry_after
from quote2cash.engine.budgets import Budget
from quote2cash.engine.budgets_memory import MemoryBudgets
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.errors import (
    AuthError,
    ConflictError,
    DataError,
    MappingError,
    TransientError,
)
from quote2cash.engine.systems import SystemGates
from quote2cash.sandbox.salesforce import DEFAULT_CLIENT_ID, DEFAULT_USERNAME


@pytest.fixture
async def client(harness: Any) -> AsyncIterator[SalesforceClient]:
    async with SalesforceClient(harness.config()) as opened:
        yield opened


def rsa_pems() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


# --- login flows ---


@pytest.mark.parametrize("flow", [AuthFlow.CLIENT_CREDENTIALS, AuthFlow.PASSWORD])
async def test_secret_based_logins_reach_the_api(harness: Any, flow: AuthFlow):
    async with SalesforceClient(harness.config(auth_flow=flow)) as client:
        limits = await client.limits()
    assert limits["DailyApiRequests"]["Max"] == 15000


async def test_jwt_bearer_login_signs_with_the_private_key(harness: Any):
    private, public = rsa_pems()
    harness.desk.admin("PATCH", "config", {"jwt_certificates": {DEFAULT_CLIENT_ID: public}})
    config = harness.config(auth_flow=AuthFlow.JWT_BEARER, private_key=private)
    async with SalesforceClient(config) as client:
        assert "DailyApiRequests" in await client.limits()
    other_private, _ = rsa_pems()
    forged = harness.config(auth_flow=AuthFlow.JWT_BEARER, private_key=other_private)
    async with SalesforceClient(forged) as client:
        with pytest.raises(AuthError) as excinfo:
            await client.limits()
    message = str(excinfo.value)
    assert DEFAULT_USERNAME in message and "invalid assertion" in message
    assert "PRIVATE KEY" not in message


def ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize("kind", ["public", "ec", "garbage"])
async def test_an_unusable_jwt_key_is_an_auth_error_that_never_quotes_it(harness: Any, kind: str):
    key = {"public": rsa_pems()[1], "ec": ec_pem(), "garbage": "not a PEM -----"}[kind]
    config = harness.config(auth_flow=AuthFlow.JWT_BEARER, private_key=key)
    async with SalesforceClient(config) as client:
        with pytest.raises(AuthError) as excinfo:
            await client.limits()
    shown = f"{excinfo.value} {excinfo.value!r}"
    assert DEFAULT_USERNAME in shown and "private_key" in shown
    assert key not in shown and "KEY-----" not in shown


async def test_wrong_password_names_the_user_never_the_password(harness: Any, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "hunter2-not-it"
    config = harness.config(auth_flow=AuthFlow.PASSWORD, password=wrong)
    async with SalesforceClient(config) as client:
        with pytest.raises(AuthError) as excinfo:
            await client.query_all("SELECT Id FROM Account")
    error = excinfo.value
    assert error.system == "crm"
    assert DEFAULT_USERNAME in error.message and "invalid_grant" in error.message
    assert wrong not in str(error) and wrong not in caplog.text
    assert wrong not in repr(config) and wrong not in str(config)
    assert wrong not in config.model_dump_json()


def test_config_names_the_missing_credential():
    with pytest.raises(ValidationError) as excinfo:
        SalesforceConfig(
            instance_url="https://acme.my.salesforce.com",
            auth_flow=AuthFlow.PASSWORD,
            client_id="app",
            client_secret="s",
            username="u@example.com",
        )
    assert "password" in str(excinfo.value)
    with pytest.raises(ValidationError):
        SalesforceConfig(instance_url="https://x.example", client_id="app", api_version="62")


async def test_tokens_never_reach_logs_or_errors(harness: Any, client: SalesforceClient, caplog):
    caplog.set_level(logging.DEBUG)
    await client.limits()
    token = client._token
    assert token
    harness.expire_sessions()
    await client.limits()
    with pytest.raises(MappingError) as excinfo:
        await client.query_all("SELECT Nope__c FROM Account")
    assert token not in caplog.text and token not in str(excinfo.value)
    assert client._token and client._token not in caplog.text


# --- sessions ---


async def test_expired_session_is_renewed_once_and_the_call_retried(
    harness: Any, client: SalesforceClient
):
    account = await client.create("Account", {"Name": "Before expiry"})
    first_token = client._token
    harness.expire_sessions()
    record = await client.get("Account", account)
    assert record["Name"] == "Before expiry"
    assert client._token != first_token


async def test_session_refused_right_after_login_is_an_auth_error(harness: Any):
    harness.desk.admin("PATCH", "config", {"session_ttl_seconds": 0})
    async with SalesforceClient(harness.config()) as client:
        with pytest.raises(AuthError) as excinfo:
            await client.limits()
    assert "INVALID_SESSION_ID" in str(excinfo.value) and "[crm]" in str(excinfo.value)


async def test_concurrent_calls_renew_the_session_once(harness: Any, client: SalesforceClient):
    await client.limits()
    harness.expire_sessions()
    generation = client._generation
    await asyncio.gather(*(client.limits() for _ in range(6)))
    assert client._generation == generation + 1


# --- queries, usage, exact numbers ---


async def test_query_follows_next_records_url(harness: Any, client: SalesforceClient):
    for n in range(8):
        harness.desk.account(f"Account {n}")
    harness.desk.admin("PATCH", "config", {"query_batch_size": 3})
    before = harness.desk.api_usage()
    rows = await client.query_all("SELECT Id, Name FROM Account ORDER BY Name")
    assert [r["Name"] for r in rows] == [f"Account {n}" for n in range(8)]
    assert harness.desk.api_usage() - before == 3
    first = await client.query_page("SELECT Id FROM Account")
    assert first.total_size == 8 and len(first.records) == 3
    assert first.next_records_url is not None


async def test_usage_follows_the_limit_header(harness: Any, client: SalesforceClient):
    await client.query_all("SELECT Id FROM Account")
    await client.limits()
    assert client.usage is not None
    assert client.usage.used == harness.desk.api_usage()
    assert client.usage.limit == 15000 and client.usage.remaining == 15000 - client.usage.used


async def test_the_limit_header_spends_the_shared_day_budget(
    harness: Any, client: SalesforceClient
):
    backend = MemoryBudgets()
    gates = SystemGates(ManualClock())
    budget = Budget("crm", "api", per_day=16000)  # 1,000 above the org's 15,000 (a licence)
    gates.configure_budgets([budget], backend)
    await client.limits()
    used = harness.desk.api_usage()
    assert used > 0
    left = backend.reserve(budget, 20_000).count
    assert left == 16000 - (used + 1000)  # the org's count, scaled to the configured allocation


async def test_amounts_are_decimals_both_ways(client: SalesforceClient):
    amount = Decimal("1234567890123456.78")
    invoice = await client.create(
        "Invoice__c", {"Invoice_Number__c": "INV-EXACT", "Amount__c": amount}
    )
    record = await client.get("Invoice__c", invoice, fields=["Amount__c"])
    assert record["Amount__c"] == amount and isinstance(record["Amount__c"], Decimal)
    rows = await client.query_all("SELECT Amount__c FROM Invoice__c")
    assert rows[0]["Amount__c"] == amount


# --- error mapping ---


async def test_unknown_field_in_a_query_is_a_mapping_error(client: SalesforceClient):
    with pytest.raises(MappingError) as excinfo:
        await client.query_all("SELECT Id, Colour__c FROM Account")
    assert "INVALID_FIELD" in str(excinfo.value) and "Colour__c" in str(excinfo.value)
    assert "Account" in str(excinfo.value)


async def test_missing_required_field_is_a_data_error(client: SalesforceClient):
    with pytest.raises(DataError) as excinfo:
        await client.create("Account", {"Phone": "+49 30 1234"})
    assert not isinstance(excinfo.value, MappingError)
    assert "REQUIRED_FIELD_MISSING" in str(excinfo.value) and "Name" in str(excinfo.value)


async def test_dangling_reference_is_a_data_error(harness: Any, client: SalesforceClient):
    gone = harness.desk.missing_account_id()
    with pytest.raises(DataError) as excinfo:
        await client.create("Subscription__c", {"Account__c": gone})
    assert "INVALID_CROSS_REFERENCE_KEY" in str(excinfo.value)
    assert "Account__c" in str(excinfo.value)


async def test_missing_record_is_a_data_error_naming_object_and_id(
    harness: Any, client: SalesforceClient
):
    gone = harness.desk.missing_account_id()
    with pytest.raises(DataError) as excinfo:
        await client.get("Account", gone)
    assert "Account" in str(excinfo.value) and gone in str(excinfo.value)
    assert "not found" in str(excinfo.value)


async def test_malformed_id_is_refused_before_any_request(harness: Any, client: SalesforceClient):
    before = harness.desk.api_usage()
    with pytest.raises(DataError) as excinfo:
        await client.get("Account", "001' OR Name != '")
    assert "malformed" in str(excinfo.value)
    assert harness.desk.api_usage() == before


async def test_upsert_matching_several_records_is_a_conflict(client: SalesforceClient):
    first = await client.create("Account", {"Name": "A", "Billing_Customer_Id__c": "cus_1"})
    second = await client.create("Account", {"Name": "B", "Billing_Customer_Id__c": "cus_1"})
    with pytest.raises(ConflictError) as excinfo:
        await client.upsert("Account", "Billing_Customer_Id__c", "cus_1", {"Phone": "1"})
    assert first in str(excinfo.value) and second in str(excinfo.value)


async def test_upsert_by_a_field_that_is_no_external_id_is_a_mapping_error(
    client: SalesforceClient,
):
    with pytest.raises(MappingError) as excinfo:
        await client.upsert("Account", "Phone", "123", {"Name": "X"})
    assert "Phone" in str(excinfo.value)


async def test_upsert_reports_created_then_updated(client: SalesforceClient):
    created = await client.upsert(
        "Invoice__c", "Invoice_Number__c", "INV-U1", {"Status__c": "Open"}
    )
    updated = await client.upsert(
        "Invoice__c", "Invoice_Number__c", "INV-U1", {"Status__c": "Paid"}
    )
    assert created[1] is True and created[0] is not None
    assert updated == (None, False)


async def test_daily_limit_is_transient_until_the_allocation_frees(
    harness: Any, client: SalesforceClient
):
    await client.limits()
    harness.exhaust_daily_limit()
    with pytest.raises(DailyLimitExceeded) as excinfo:
        await client.limits()
    error = excinfo.value
    assert isinstance(error, TransientError)
    assert error.retry_after is not None and 1 <= error.retry_after <= 3600
    assert "REQUEST_LIMIT_EXCEEDED" in str(error)


def test_daily_limit_retry_is_until_midnight_capped():
    from datetime import UTC, datetime

    late = datetime(2026, 11, 26, 23, 59, 30, tzinfo=UTC)
    assert daily_limit_retry_after(late, 3600) == 30
    early = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert daily_limit_retry_after(early, 3600) == 3600


async def test_foreign_cursor_is_refused(client: SalesforceClient):
    with pytest.raises(DataError):
        await client.query_page(next_records_url="https://evil.example/steal")
    with pytest.raises(DataError) as excinfo:
        await client.query_page(next_records_url=f"{client.api_base}/query/01gNOPE-200")
    assert "INVALID_QUERY_LOCATOR" in str(excinfo.value)


# --- outages the emulator cannot stage: a local HTTP server answering like Salesforce does ---

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def outage() -> AsyncIterator[Callable[[Handler, Handler | None], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(api: Handler, token: Handler | None = None) -> str:
        async def default_token(request: web.Request) -> web.Response:
            return web.json_response(
                {"access_token": "00Dfake!token", "instance_url": "ignored", "token_type": "Bearer"}
            )

        app = web.Application()
        app.router.add_post("/services/oauth2/token", token or default_token)
        app.router.add_route("*", "/services/data/{tail:.*}", api)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def plain_config(url: str, **overrides: Any) -> SalesforceConfig:
    values: dict[str, Any] = {
        "instance_url": url,
        "client_id": "app",
        "client_secret": "s3cret-value",
        "request_timeout": 2.0,
        **overrides,
    }
    return SalesforceConfig(**values)


async def test_unavailable_honours_retry_after(outage):
    async def unavailable(request: web.Request) -> web.Response:
        body = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Maintenance"}]
        return web.json_response(body, status=503, headers={"Retry-After": "7"})

    url = await outage(unavailable)
    async with SalesforceClient(plain_config(url)) as client:
        with pytest.raises(TransientError) as excinfo:
            await client.limits()
    assert excinfo.value.retry_after == 7 and "SERVER_UNAVAILABLE" in str(excinfo.value)


async def test_too_many_requests_is_transient(outage):
    async def busy(request: web.Request) -> web.Response:
        return web.json_response([], status=429)

    url = await outage(busy)
    async with SalesforceClient(plain_config(url)) as client:
        with pytest.raises(TransientError) as excinfo:
            await client.limits()
    assert excinfo.value.retry_after is not None and excinfo.value.retry_after > 0


async def test_token_endpoint_outage_is_transient(outage):
    async def api(request: web.Request) -> web.Response:
        return web.json_response({})

    async def broken_token(request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    url = await outage(api, broken_token)
    async with SalesforceClient(plain_config(url)) as client:
        with pytest.raises(TransientError) as excinfo:
            await client.limits()
    assert "s3cret-value" not in str(excinfo.value)


async def test_timeout_is_transient(outage):
    release = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    url = await outage(stuck)
    try:
        async with SalesforceClient(plain_config(url, request_timeout=0.3)) as client:
            with pytest.raises(TransientError) as excinfo:
                await client.limits()
        assert "timed out" in str(excinfo.value)
    finally:
        release.set()


async def test_connection_refused_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with SalesforceClient(plain_config(f"http://127.0.0.1:{port}")) as client:
        with pytest.raises(TransientError) as excinfo:
            await client.limits()
    assert excinfo.value.system == "crm"
