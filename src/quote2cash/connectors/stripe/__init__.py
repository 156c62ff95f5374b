"""Stripe as the hub's billing platform: the ``Billing`` role on the official ``stripe`` SDK."""

from quote2cash.connectors.stripe.client import (
    CardDeclined,
    InvalidRequest,
    ResourceMissing,
    StripeApi,
    map_stripe_error,
)
from quote2cash.connectors.stripe.config import CollectionMethod, CustomerLookup, StripeConfig
from quote2cash.connectors.stripe.connector import StripeBilling, verify_webhook
from quote2cash.connectors.stripe.mapping import EVENT_TYPES

__all__ = [
    "EVENT_TYPES",
    "CardDeclined",
    "CollectionMethod",
    "CustomerLookup",
    "InvalidRequest",
    "ResourceMissing",
    "StripeApi",
    "StripeBilling",
    "StripeConfig",
    "map_stripe_error",
    "verify_webhook",
]
