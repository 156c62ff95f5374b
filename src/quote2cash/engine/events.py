"""The CloudEvents-shaped envelope every event travels in (DESIGN.md section 3)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from quote2cash.engine.ids import new_id

_TYPE_PARTS = 3
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class Event(msgspec.Struct, kw_only=True, frozen=True):
    """One fact, as recorded in the log. ``subject`` is the business key that orders it.

    ``sequence`` and ``pos`` are assigned by the log on append; callers leave them unset.
    """

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    correlation_id: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    causation_id: str | None = None
    schema_version: int = 1
    sequence: int | None = None
    pos: int | None = None
    traceparent: str | None = None
    """W3C trace context of the span that made this event: its handling joins that trace."""


class EventValidationError(ValueError):
    """An envelope that cannot be logged; the message names the event and the field."""


def new_event(
    type: str,
    subject: str,
    data: dict[str, Any] | None = None,
    *,
    source: str = "q2c",
    id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    time: datetime | None = None,
) -> Event:
    """Build an envelope with a fresh id; a new correlation id is minted when none is given."""
    return Event(
        id=id or new_id(),
        source=source,
        type=type,
        subject=subject,
        time=time or datetime.now(UTC),
        correlation_id=correlation_id or new_id(),
        causation_id=causation_id,
        data=data or {},
    )


def validate_envelope(event: Event) -> None:
    """Refuse envelopes the engine could not order, trace or replay."""
    ref = f"event {event.source}/{event.id or '?'}"
    for name in ("id", "source", "type", "subject", "correlation_id"):
        value = getattr(event, name)
        if not isinstance(value, str) or not value.strip():
            raise EventValidationError(f"{ref}: field '{name}' must be a non-empty string")
    if len(event.type.split(".")) < _TYPE_PARTS:
        raise EventValidationError(
            f"{ref}: field 'type' is {event.type!r}; expected '<system-or-domain>.<entity>.<verb>'"
        )
    if event.time.tzinfo is None:
        raise EventValidationError(f"{ref}: field 'time' is naive; expected an aware UTC time")
    try:
        event.time.astimezone(UTC)
    except OverflowError:
        raise EventValidationError(
            f"{ref}: field 'time' is {event.time.isoformat()}; expected a time in UTC years "
            "1 to 9999"
        ) from None
    if event.traceparent is not None and not TRACEPARENT.match(event.traceparent):
        raise EventValidationError(
            f"{ref}: field 'traceparent' is not a W3C traceparent (version-traceid-spanid-flags)"
        )
    if len(event.subject) > 300 or len(event.id) > 200 or len(event.source) > 200:
        raise EventValidationError(f"{ref}: id/source/subject too long (max 200/200/300)")


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder()


def encode_data(data: dict[str, Any]) -> str:
    """JSON with Decimals as strings, so money never passes through float."""
    return _encoder.encode(data).decode()


def encode_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def decode_data(raw: str) -> dict[str, Any]:
    value = _decoder.decode(raw)
    if not isinstance(value, dict):
        raise EventValidationError("event data must be a JSON object")
    return value
