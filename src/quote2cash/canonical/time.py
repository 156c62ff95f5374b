"""Instants are timezone-aware UTC: naive datetimes are refused, other offsets converted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator

_NO_OFFSET = timedelta(0)


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone: its instant is ambiguous, so it is never guessed."""


def ensure_utc(value: datetime) -> datetime:
    """``value`` as UTC (same instant); raises NaiveDatetimeError if it has no timezone."""
    offset = value.utcoffset()
    if offset is None:
        raise NaiveDatetimeError(
            f"datetime must be timezone-aware (UTC expected), got naive {value.isoformat()}"
        )
    if value.tzinfo is UTC:
        return value
    if offset == _NO_OFFSET:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(ensure_utc)]
"""A pydantic field type: an aware datetime, stored in UTC (``tzinfo is datetime.UTC``)."""
