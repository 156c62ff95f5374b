"""OpenID Connect settings validation and the sealed sign-in state (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from quote2cash.identity.oidc import PendingSignIn
from quote2cash.identity.oidc_settings import (
    OidcConfigError,
    OidcSettings,
    check_settings,
    is_secure_url,
    load_oidc_settings,
)
from quote2cash.identity.oidc_state import SignInStateInvalid, open_pending, seal_pending

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PENDING = PendingSignIn("state-1", "nonce-1", "verifier-1", NOW + timedelta(minutes=10))


def _settings(**changes: str) -> OidcSettings:
    values = {
        "issuer": "https://login.example.com",
        "client_id": "hub",
        "client_secret": "s3cret-value",
        "redirect_url": "https://hub.example.com/console/oidc/callback",
        **changes,
    }
    return OidcSettings(**values)  # type: ignore[arg-type]


def test_unset_issuer_means_oidc_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("Q2C_OIDC_ISSUER", raising=False)
    assert load_oidc_settings() is None


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("Q2C_OIDC_ISSUER", "https://login.example.com")
    monkeypatch.setenv("Q2C_OIDC_CLIENT_SECRET", "s3cret-value")
    for name in ("Q2C_OIDC_CLIENT_ID", "Q2C_OIDC_REDIRECT_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(OidcConfigError) as caught:
        load_oidc_settings()
    assert "Q2C_OIDC_CLIENT_ID" in str(caught.value)
    assert "Q2C_OIDC_REDIRECT_URL" in str(caught.value)
    assert "s3cret-value" not in str(caught.value)


def test_the_secret_is_not_in_the_settings_repr() -> None:
    assert "s3cret-value" not in repr(_settings()) + str(_settings())


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"issuer": "http://login.example.com"}, "Q2C_OIDC_ISSUER"),
        ({"redirect_url": "http://hub.example.com/cb"}, "Q2C_OIDC_REDIRECT_URL"),
        ({"issuer": "login.example.com"}, "Q2C_OIDC_ISSUER"),
        ({"scopes": "email profile"}, "Q2C_OIDC_SCOPES"),
    ],
)
def test_plain_http_outside_loopback_and_missing_openid_scope_are_refused(
    changes: dict[str, str], named: str
) -> None:
    with pytest.raises(OidcConfigError, match=named):
        check_settings(_settings(**changes))


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("https://login.example.com/x", True),
        ("http://127.0.0.1:8080/x", True),
        ("http://localhost/x", True),
        ("http://login.example.com/x", False),
        ("http://127.0.0.1.example.com/x", False),
        ("https:///x", False),
        ("ftp://127.0.0.1/x", False),
    ],
)
def test_secure_urls(url: str, secure: bool) -> None:
    assert is_secure_url(url) is secure


def test_loopback_http_is_allowed_for_the_sandbox() -> None:
    check_settings(
        _settings(issuer="http://127.0.0.1:9999", redirect_url="http://localhost:8080/cb")
    )


def test_sealed_state_opens_with_the_same_secret_only() -> None:
    sealed = seal_pending(PENDING, "s3cret-value")
    assert "state-1" not in sealed and "verifier-1" not in sealed
    assert open_pending(sealed, "s3cret-value", NOW) == PENDING
    with pytest.raises(SignInStateInvalid):
        open_pending(sealed, "another-deployment", NOW)


def test_the_page_to_return_to_survives_the_seal() -> None:
    pending = replace(PENDING, return_to="/console/trace/C-1?tab=audit")
    assert open_pending(seal_pending(pending, "k"), "k", NOW).return_to == pending.return_to


def test_sealed_state_expires() -> None:
    sealed = seal_pending(PENDING, "s3cret-value")
    with pytest.raises(SignInStateInvalid, match="expired"):
        open_pending(sealed, "s3cret-value", NOW + timedelta(minutes=10))


@pytest.mark.parametrize("garbage", ["", "x", "%%%", "A" * 200])
def test_garbage_state_is_refused_not_crashed(garbage: str) -> None:
    with pytest.raises(SignInStateInvalid):
        open_pending(garbage, "s3cret-value", NOW)
