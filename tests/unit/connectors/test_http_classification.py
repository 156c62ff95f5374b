"""connectors.http: one table from HTTP status and transport failure to the engine's errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from quote2cash.connectors import http
from quote2cash.engine.errors import (
    AuthError,
    Category,
    ConflictError,
    DataError,
    IntegrationError,
    MappingError,
    TransientError,
)

S = http.StatusClass
TABLE: list[tuple[int, http.StatusClass, type[IntegrationError] | None]] = [
    (200, S.SUCCESS, None),
    (201, S.SUCCESS, None),
    (204, S.SUCCESS, None),
    (408, S.TRANSIENT, TransientError),
    (429, S.TRANSIENT, TransientError),
    (500, S.TRANSIENT, TransientError),
    (502, S.TRANSIENT, TransientError),
    (503, S.TRANSIENT, TransientError),
    (504, S.TRANSIENT, TransientError),
    (599, S.TRANSIENT, TransientError),
    (401, S.AUTH, AuthError),
    (403, S.AUTH, AuthError),
    (404, S.NOT_FOUND, DataError),
    (410, S.NOT_FOUND, DataError),
    (409, S.CONFLICT, ConflictError),
    (412, S.CONFLICT, ConflictError),
    (400, S.DATA, DataError),
    (422, S.DATA, DataError),
    (413, S.DATA, DataError),
    (100, S.UNEXPECTED, MappingError),
    (301, S.UNEXPECTED, MappingError),
    (302, S.UNEXPECTED, MappingError),
    (600, S.UNEXPECTED, MappingError),
]


@pytest.mark.parametrize(("status", "kind", "error"), TABLE)
def test_every_status_class(
    status: int, kind: http.StatusClass, error: type[IntegrationError] | None
) -> None:
    assert http.classify_status(status) is kind
    if error is None:
        return
    raised = http.status_error(status, "create order SO-1", system="erp", detail="why")
    assert type(raised) is error
    assert raised.system == "erp"
    assert "create order SO-1" in raised.message and str(status) in raised.message
    assert "why" in raised.message


def test_permanent_errors_carry_the_category_a_person_fixes() -> None:
    categories = {
        status: getattr(http.status_error(status, "x", system=None), "category", None)
        for status in (401, 404, 409, 422, 302)
    }
    assert categories == {
        401: Category.AUTH,
        404: Category.DATA,
        409: Category.CONFLICT,
        422: Category.DATA,
        302: Category.MAPPING,
    }


NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 2 ", 2.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Sun, 06 Dec 2026 12:00:30 GMT", 30.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_retry_after_parsing(value: str | None, seconds: float | None) -> None:
    assert http.retry_after_seconds(value, now=NOW) == seconds


def test_a_transient_status_carries_the_servers_retry_after_else_the_default() -> None:
    told = http.status_error(503, "read", system="crm", headers={"retry-after": "12"})
    silent = http.status_error(429, "read", system="crm", headers={}, default_retry_after=5.0)
    garbled = http.status_error(
        502, "read", system="crm", headers={"Retry-After": "later"}, default_retry_after=3.0
    )
    assert isinstance(told, TransientError) and told.retry_after == 12.0
    assert isinstance(silent, TransientError) and silent.retry_after == 5.0
    assert isinstance(garbled, TransientError) and garbled.retry_after == 3.0


def test_header_lookup_ignores_case() -> None:
    assert http.header({"RETRY-AFTER": "4"}, "Retry-After") == "4"
    assert http.header(None, "Retry-After") is None


SECRET = "s3cret-token-4711"


@pytest.mark.parametrize("status", [401, 403, 404, 409, 422, 429, 500, 302])
def test_no_header_but_retry_after_reaches_a_message(status: int) -> None:
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "Set-Cookie": f"sid={SECRET}",
        "Retry-After": "1",
    }
    raised = http.status_error(status, "update account", system="crm", headers=headers)
    shown = f"{raised} {raised!r} {raised.args} {raised.message}"
    assert SECRET not in shown


@pytest.mark.parametrize(
    "failure",
    [
        TimeoutError(f"timed out calling https://user:{SECRET}@erp.example/rpc"),
        aiohttp.InvalidURL(f"https://user:{SECRET}@erp.example/rpc"),
        aiohttp.ServerDisconnectedError(f"closed, token={SECRET}"),
        aiohttp.ClientPayloadError(f"broken body {SECRET}"),
        aiohttp.ServerTimeoutError(f"read timeout {SECRET}"),
    ],
)
def test_transport_failures_are_transient_and_never_quote_the_exception(
    failure: BaseException,
) -> None:
    assert isinstance(failure, http.TRANSPORT_ERRORS)
    raised = http.transport_error(failure, "Tryton 'model.sale.sale.create'", system="erp")
    assert isinstance(raised, TransientError) and raised.system == "erp"
    assert raised.message.startswith("Tryton 'model.sale.sale.create': ")
    assert SECRET not in f"{raised} {raised!r} {raised.args}"


def test_a_timeout_says_so() -> None:
    for failure in (TimeoutError(), aiohttp.ServerTimeoutError()):
        assert "timed out" in http.transport_error(failure, "x", system=None).message


@pytest.mark.parametrize(
    ("status", "headers", "throttled"),
    [
        (429, {}, True),
        (429, {"Retry-After": "2"}, True),
        (503, {"Retry-After": "5"}, True),
        (503, {}, False),
        (500, {"Retry-After": "5"}, False),
        (408, {}, False),
    ],
)
def test_a_refusal_for_load_is_marked_throttled_so_the_budget_waits_everywhere(
    status: int, headers: dict[str, str], throttled: bool
) -> None:
    error = http.status_error(status, "create customer", system="billing", headers=headers)
    assert isinstance(error, TransientError)
    assert error.throttled is throttled
