"""The ``Q2C_OIDC_*`` settings of OpenID Connect sign-in, checked at load.

Guaranteed: a missing or invalid setting is named (never its value), the client secret is a
SecretStr (hidden in reprs and logs), and the provider and callback are https except on loopback.
"""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from quote2cash.identity import IdentityError

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class OidcConfigError(IdentityError):
    """The ``Q2C_OIDC_*`` settings are incomplete or invalid; the message names the setting."""


class OidcSettings(BaseSettings):
    """Where the provider is and who the hub is to it; all four are needed to enable sign-in."""

    model_config = SettingsConfigDict(env_prefix="Q2C_OIDC_", extra="ignore")

    issuer: str = Field(description="the provider's issuer URL, exactly as its discovery says")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(description="confidential client secret (never logged)")
    redirect_url: str = Field(description="the hub's callback: https://HOST/console/oidc/callback")
    scopes: str = "openid email profile"
    leeway_seconds: int = Field(default=60, ge=0, le=600)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


def load_oidc_settings() -> OidcSettings | None:
    """The provider settings from ``Q2C_OIDC_*``; None when ``Q2C_OIDC_ISSUER`` is not set."""
    if not os.environ.get("Q2C_OIDC_ISSUER"):
        return None
    try:
        settings = OidcSettings()
    except ValidationError as exc:
        names = ", ".join(
            "Q2C_OIDC_" + str(err["loc"][0]).upper() for err in exc.errors() if err["loc"]
        )
        raise OidcConfigError(f"OpenID Connect settings incomplete or invalid: {names}") from None
    check_settings(settings)
    return settings


def is_secure_url(url: str) -> bool:
    """https, or plain http to this machine's loopback (the sandbox)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def check_settings(settings: OidcSettings) -> None:
    """Issuer and redirect URL must be https (plain http only on this machine's loopback)."""
    for setting, url in (
        ("Q2C_OIDC_ISSUER", settings.issuer),
        ("Q2C_OIDC_REDIRECT_URL", settings.redirect_url),
    ):
        if not is_secure_url(url):
            raise OidcConfigError(f"{setting} must be an https:// URL (http only for 127.0.0.1)")
    if "openid" not in settings.scopes.split():
        raise OidcConfigError("Q2C_OIDC_SCOPES must include openid")
