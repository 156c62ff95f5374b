"""The hub's check of the CRM's Closed-Won callout signature (shared secret, HMAC-SHA256).

Header ``X-Q2C-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is HMAC-SHA256 keyed with
the shared secret over ``f"{t}."`` followed by the raw body bytes. Several ``v1`` values are
accepted (secret rotation on the sender's side). Comparison is constant-time; the secret is
never part of an error.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Final

SIGNATURE_HEADER: Final = "X-Q2C-Signature"
DEFAULT_TOLERANCE: Final = 300
MAX_TIMESTAMP_DIGITS: Final = 12
"""Unix seconds up to year 33658; a longer ``t`` is malformed, refused before any arithmetic."""


class SignatureError(ValueError):
    """A delivery that cannot be trusted; the message is safe to return to the sender."""


def expected_signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_callout(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    now: datetime,
    tolerance: int = DEFAULT_TOLERANCE,
) -> int:
    """Check ``header`` against ``body``; returns the signed timestamp or raises SignatureError."""
    if not header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                if not (value.isascii() and value.isdigit() and len(value) <= MAX_TIMESTAMP_DIGITS):
                    raise ValueError(value)
                timestamp = int(value)
            except ValueError:
                raise SignatureError(
                    f"the {SIGNATURE_HEADER} header's t is not a unix time"
                ) from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is malformed (expected t=...,v1=...)")
    age = now.timestamp() - timestamp
    if abs(age) > tolerance:
        raise SignatureError(
            f"the signature's timestamp is {abs(age):.0f} s from now; more than {tolerance} s "
            "(stale or replayed delivery)"
        )
    expected = expected_signature(secret, timestamp, body)
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no signature matches the payload (wrong secret or altered body)")
    return timestamp
