"""Every business event the hub publishes: its type, the stream subject it goes to, its
CloudEvents type. ``docs/asyncapi.yaml`` documents exactly these (a test compares them)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

CLOUDEVENTS_DOMAIN: Final = "q2c"
"""CloudEvents ``type`` is ``q2c.<entity>.<verb>`` whatever the deployment's subject prefix."""


class BusinessEvent(StrEnum):
    """``<entity>.<verb>``, past tense, in the business's words."""

    CUSTOMER_CREATED = "customer.created"
    SUBSCRIPTION_ACTIVATED = "subscription.activated"
    SUBSCRIPTION_AMENDED = "subscription.amended"
    SUBSCRIPTION_RENEWED = "subscription.renewed"
    SUBSCRIPTION_CANCELLED = "subscription.cancelled"
    INVOICE_POSTED = "invoice.posted"
    CREDIT_NOTE_ISSUED = "credit_note.issued"
    PAYMENT_RECEIVED = "payment.received"
    PAYMENT_REVERSED = "payment.reversed"


def subject_of(prefix: str, event_type: str) -> str:
    """The JetStream subject of a business event: ``<prefix>.<entity>.<verb>``."""
    return f"{prefix}.{event_type}"


def cloudevents_type(event_type: str) -> str:
    return f"{CLOUDEVENTS_DOMAIN}.{event_type}"


def stream_subjects(prefix: str) -> list[str]:
    """What the stream captures: every ``<prefix>.<entity>.<verb>`` (three tokens exactly, so it
    never overlaps the audit checkpoints' ``q2c.audit.<stream>.<store>``)."""
    return [f"{prefix}.*.*"]
