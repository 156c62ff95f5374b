"""How the hub reaches one Salesforce org: where, which API version, which login flow.

Secrets are ``SecretStr``: they never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class AuthFlow(StrEnum):
    """The OAuth 2.0 flows a connected app can use for a server-to-server integration."""

    CLIENT_CREDENTIALS = "client_credentials"
    PASSWORD = "password"  # noqa: S105 - the OAuth grant's name, not a secret
    JWT_BEARER = "jwt_bearer"


ApiVersion = Annotated[str, Field(pattern=r"^\d{2,3}\.0$")]
Url = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]


class SalesforceConfig(BaseModel):
    """One org's connection settings; validated so a missing credential fails at load, by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_url: Url = Field(
        description="the org's My Domain URL, e.g. https://acme.my.salesforce.com"
    )
    login_url: Url | None = Field(
        default=None,
        description="where /services/oauth2/token lives (default: instance_url); "
        "https://login.salesforce.com or https://test.salesforce.com for username flows",
    )
    api_version: ApiVersion = "62.0"
    auth_flow: AuthFlow = AuthFlow.CLIENT_CREDENTIALS
    client_id: str = Field(min_length=1, description="the connected app's consumer key")
    client_secret: SecretStr | None = None
    username: str | None = Field(default=None, description="integration user (password, JWT)")
    password: SecretStr | None = Field(
        default=None, description="password plus security token, as Salesforce expects"
    )
    private_key: SecretStr | None = Field(
        default=None, description="PEM RSA private key whose certificate the connected app holds"
    )
    jwt_audience: str | None = Field(
        default=None, description="JWT 'aud' claim (default: login_url or instance_url)"
    )
    ca_file: Path | None = Field(default=None, description="extra CA bundle (sandbox, proxies)")
    connect_timeout: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=60.0, gt=0)
    max_concurrency: int = Field(
        default=8,
        ge=1,
        le=25,
        description="requests in flight per process (Salesforce caps long-running requests at "
        "25 per org; 8 is the engine's own cap per system and process): a deal's CRM reads "
        "come before its billing work, so at 4 they set the pace of the billing budget's use",
    )
    daily_limit_retry_cap_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="longest retry_after given when the daily API allocation is used up",
    )
    amendment_object: str = Field(
        default="Amendment_Request__c",
        pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$",
        description="custom object where sales reps request mid-term seat changes",
    )
    opportunity_bill_to_field: str | None = Field(
        default="Bill_To_Account__c",
        pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$",
        description="Opportunity lookup to the account invoiced when it is not the buyer "
        "(None: the org has none; every deal bills its own account)",
    )
    account_email_field: str | None = Field(default="Billing_Email__c")
    account_tax_id_field: str | None = Field(default="VAT_Number__c")
    account_tax_id_type: str = Field(default="eu_vat", pattern=r"^[a-z]{2,3}(_[a-z0-9]+)+$")
    account_other_tax_id_fields: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")],
        Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[a-z0-9]+)+$")],
    ] = Field(
        default_factory=lambda: {"EIN__c": "us_ein"},
        description="further Account fields holding a tax registration, field -> tax id type "
        "(e.g. a US EIN for the US company); a field the org lacks is skipped",
    )

    @model_validator(mode="after")
    def _credentials_for_flow(self) -> Self:
        needed = {
            AuthFlow.CLIENT_CREDENTIALS: ("client_secret",),
            AuthFlow.PASSWORD: ("client_secret", "username", "password"),
            AuthFlow.JWT_BEARER: ("username", "private_key"),
        }[self.auth_flow]
        missing = [name for name in needed if getattr(self, name) in (None, "")]
        if missing:
            raise ValueError(
                f"auth_flow {self.auth_flow.value!r} needs {', '.join(missing)} "
                f"(got none for {', '.join(missing)})"
            )
        return self

    @property
    def token_url(self) -> str:
        return f"{(self.login_url or self.instance_url).rstrip('/')}/services/oauth2/token"

    @property
    def login_name(self) -> str:
        """Who logs in, for messages: the user where there is one, else the connected app."""
        if self.auth_flow is AuthFlow.CLIENT_CREDENTIALS or not self.username:
            return f"connected app {self.client_id}"
        return f"user {self.username}"
