"""Every kind of secret the hub handles is masked in text bound for a log or an error line."""

from __future__ import annotations

import logging
import sys

import pytest

from quote2cash.observability.redact import RedactingFilter, redact

SECRETS = {
    "webhook signing secret": ("created whsec_Zx81kP0qL2vN9wQ", "whsec_Zx81kP0qL2vN9wQ"),
    "Stripe test key": ("api_key=sk_test_51HxYzAbCdEf", "sk_test_51HxYzAbCdEf"),
    "Stripe live key": ("key sk_live_9s8d7f6g5h4j", "sk_live_9s8d7f6g5h4j"),
    "hub token": ("token q2c_A1b2C3d4E5f6G7h8 used", "q2c_A1b2C3d4E5f6G7h8"),
    "bearer header": ("Authorization: Bearer eyJhbGciOi.x.y", "eyJhbGciOi.x.y"),
    "query token": ("GET /v1/events?limit=5&token=opaque-value-1 HTTP/1.1", "opaque-value-1"),
    "password field": ('{"username": "ops", "password": "hunter2!"}', "hunter2!"),
    "escaped JSON secret": ('body="{\\"secret\\": \\"s3cr3t-value\\"}"', "s3cr3t-value"),
    "client secret": ("client_secret=abc123def&grant_type=password", "abc123def"),
    "URL password": ("postgresql://hub:pa55word@db.example/q2c", "pa55word"),
    "OIDC authorization code": (
        "GET /console/oidc/callback?code=Spl4xQ9-zz&state=abc HTTP/1.1",
        "Spl4xQ9-zz",
    ),
    "OIDC state": ("GET /console/oidc/callback?state=St8-Qx_1&code=c HTTP/1.1", "St8-Qx_1"),
    "implicit-flow token in a fragment-less URL": ("/cb?id_token=eyJ.a.b&x=1", "eyJ.a.b"),
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_kind_of_secret_is_masked_and_the_rest_kept(kind: str) -> None:
    text, secret = SECRETS[kind]
    masked = redact(text)
    assert secret not in masked
    assert "***" in masked


def test_names_and_ids_that_are_not_secrets_stay_readable() -> None:
    text = (
        "token_name=ci-deploy event evt_1Abc subject contract:C-1 customer cus_9; "
        "api tokens: bearer tokens for the REST API, Basic authentication"
    )
    assert redact(text) == text


def test_the_filter_redacts_message_arguments_and_traceback() -> None:
    try:
        raise ValueError("rejected sk_test_abcdef123456")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "login %s with %s", ("ops", "password=pw-123"), None
        )
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert "pw-123" not in record.getMessage()
    assert record.exc_text is not None
    assert "sk_test_abcdef123456" not in record.exc_text
    assert "ValueError" in record.exc_text
