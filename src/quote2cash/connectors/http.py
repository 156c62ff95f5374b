"""One classification of HTTP answers and transport failures into the engine's error taxonomy.

Every client asks here whether a status is worth trying again, how long the server asked it to
wait and what a timeout or refused connection becomes; a client adds only what its system's error
bodies say. Clients never retry transient failures themselves: the engine's layer does (DESIGN §4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

import aiohttp

from quote2cash.engine.errors import (
    AuthError,
    ConflictError,
    DataError,
    IntegrationError,
    MappingError,
    TransientError,
)

__all__ = [
    "TRANSPORT_ERRORS",
    "StatusClass",
    "classify_status",
    "header",
    "is_throttled",
    "retry_after_seconds",
    "status_error",
    "transport_error",
]

TRANSPORT_ERRORS: Final = (aiohttp.ClientError, TimeoutError)
"""What a request raises when no HTTP answer arrived: catch these, hand them to transport_error."""


class StatusClass(StrEnum):
    """What an HTTP status says about the request, independent of the system that answered."""

    SUCCESS = "success"
    TRANSIENT = "transient"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    DATA = "data"
    UNEXPECTED = "unexpected"


def classify_status(status: int) -> StatusClass:
    """408, 429 and 5xx may pass; 401/403 want credentials; 404/410 gone; 409/412 conflict."""
    if 200 <= status < 300:
        return StatusClass.SUCCESS
    if status in (408, 429) or 500 <= status < 600:
        return StatusClass.TRANSIENT
    if status in (401, 403):
        return StatusClass.AUTH
    if status in (404, 410):
        return StatusClass.NOT_FOUND
    if status in (409, 412):
        return StatusClass.CONFLICT
    if 400 <= status < 500:
        return StatusClass.DATA
    return StatusClass.UNEXPECTED


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value by case-insensitive name, from aiohttp's headers or a plain dict."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def is_throttled(status: int, retry_after: float | None) -> bool:
    """The system refused for load and said how long to wait: 429, or 503 with ``Retry-After``;
    the engine then holds the system's budget in every process, not only this call."""
    return status == 429 or (status == 503 and retry_after is not None)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date; None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def status_error(
    status: int,
    what: str,
    *,
    system: str | None,
    headers: Mapping[str, str] | None = None,
    detail: str = "",
    default_retry_after: float | None = None,
) -> IntegrationError:
    """The engine error for a non-2xx answer to ``what``; ``detail`` must hold no secret.

    Transient errors carry the server's ``Retry-After`` (else ``default_retry_after``); nothing
    else from ``headers`` reaches the message.
    """
    text = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    kind = classify_status(status)
    if kind is StatusClass.TRANSIENT:
        wait = retry_after_seconds(header(headers, "Retry-After"))
        return TransientError(
            text,
            system=system,
            retry_after=default_retry_after if wait is None else wait,
            throttled=is_throttled(status, wait),
        )
    if kind is StatusClass.AUTH:
        return AuthError(text, system=system)
    if kind is StatusClass.NOT_FOUND:
        return DataError(f"{text} (not found)", system=system)
    if kind is StatusClass.CONFLICT:
        return ConflictError(text, system=system)
    if kind is StatusClass.DATA:
        return DataError(text, system=system)
    return MappingError(f"{text} (an answer the connector does not expect)", system=system)


def transport_error(
    exc: BaseException, what: str, *, system: str | None, retry_after: float | None = None
) -> TransientError:
    """A request that got no answer (timeout, refused or dropped connection): always transient.

    The message names the kind of failure and, for a refused connection, host and port only:
    never the exception's own text, which may quote a URL with credentials.
    """
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        reason = "timed out"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        reason = f"cannot connect to {exc.host}:{exc.port} ({type(exc).__name__})"
    else:
        reason = f"connection failed ({type(exc).__name__})"
    return TransientError(f"{what}: {reason}", system=system, retry_after=retry_after)
