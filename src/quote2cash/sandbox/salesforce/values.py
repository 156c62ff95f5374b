"""Wire formats of field values: JSON in and out, exact decimals, Salesforce timestamps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(float_hook=Decimal)


def dumps(value: Any) -> bytes:
    """JSON with Decimals written as exact JSON numbers (no float rounding)."""
    return _encoder.encode(value)


def loads(raw: bytes | str) -> Any:
    """JSON with every non-integer number decoded as an exact Decimal."""
    return _decoder.decode(raw)


def format_datetime(value: datetime) -> str:
    """Salesforce's datetime format: millisecond precision and a ``+0000`` offset."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime | None:
    """ISO 8601 with Z, +hh:mm or +hhmm offsets; None unless it names an aware instant."""
    candidate = text.strip()
    if candidate.endswith("Z"):
        candidate = candidate[:-1] + "+00:00"
    elif len(candidate) > 5 and candidate[-5] in "+-" and candidate[-4:].isdigit():
        candidate = candidate[:-2] + ":" + candidate[-2:]
    if "T" not in candidate:
        return None
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def parse_date(text: str) -> date | None:
    if len(text) != 10:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def format_decimal(value: Decimal, scale: int) -> Decimal:
    """A Decimal printed in plain notation at the field's scale (no exponent)."""
    quantum = Decimal(1).scaleb(-scale)
    return value.quantize(quantum)


def to_wire(value: Any) -> Any:
    """A stored field value as Salesforce writes it in JSON."""
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


class Clock:
    """The emulator's notion of now; tests can move it forward to expire sessions or limits."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        moment = datetime.now(UTC) + self.offset
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
