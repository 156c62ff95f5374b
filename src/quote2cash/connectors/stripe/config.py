"""How the hub reaches one Stripe account: key, endpoint, webhook secret, timeouts.

Secrets are ``SecretStr``: they never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

Url = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]

SANDBOX_API_KEY = "sk_test_quote2cash_sandbox"
SANDBOX_WEBHOOK_SECRET = "whsec_quote2cash_sandbox"  # noqa: S105 - a local test secret


class CollectionMethod(StrEnum):
    """How Stripe collects a subscription's invoices."""

    CHARGE_AUTOMATICALLY = "charge_automatically"
    SEND_INVOICE = "send_invoice"


class CustomerLookup(StrEnum):
    """How ``upsert_customer`` finds an existing customer by ``metadata['hub_global_id']``.

    ``search``: Stripe's Search API (eventually consistent, seconds behind writes; not offered to
    accounts in India). ``email``: list customers by exact email and match the metadata locally
    (for accounts or fakes without search, e.g. localstripe).
    """

    SEARCH = "search"
    EMAIL = "email"


class StripeConfig(BaseModel):
    """One Stripe account's connection settings; validated at load so a bad value fails by name."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    api_key: SecretStr = Field(description="secret or restricted key (sk_... / rk_...)")
    base_url: Url | None = Field(
        default=None, description="API base URL; None means the real https://api.stripe.com"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="the endpoint's signing secret (whsec_...)"
    )
    connect_timeout: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=60.0, gt=0)
    collection_method: CollectionMethod = CollectionMethod.CHARGE_AUTOMATICALLY
    days_until_due: int = Field(default=30, ge=0, le=365, description="for send_invoice")
    customer_lookup: CustomerLookup = CustomerLookup.SEARCH
    webhook_tolerance_seconds: int = Field(default=300, ge=1)

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("sk_", "rk_")):
            raise ValueError("api_key must be a Stripe secret or restricted key (sk_... or rk_...)")
        return value

    @classmethod
    def for_sandbox(cls, base_url: str, **overrides: object) -> StripeConfig:
        """Settings for a local emulator or localstripe at ``base_url``: the test key and secret."""
        values: dict[str, object] = {
            "api_key": SANDBOX_API_KEY,
            "base_url": base_url,
            "webhook_secret": SANDBOX_WEBHOOK_SECRET,
            "connect_timeout": 5.0,
            "request_timeout": 30.0,
        }
        values.update(overrides)
        return cls.model_validate(values)
