"""Instants are aware UTC: naive refused, offsets converted, JSON keeps the instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from quote2cash.canonical import NaiveDatetimeError, UtcDateTime, ensure_utc, utc_now


class _Stamped(BaseModel):
    at: UtcDateTime


def test_naive_datetime_is_refused_with_the_value() -> None:
    with pytest.raises(NaiveDatetimeError, match=r"timezone-aware .* naive 2025-03-01T12:00:00"):
        ensure_utc(datetime(2025, 3, 1, 12, 0))
    with pytest.raises(ValidationError) as raised:
        _Stamped(at=datetime(2025, 3, 1, 12, 0))
    assert raised.value.errors()[0]["loc"] == ("at",)
    with pytest.raises(ValidationError, match="naive"):
        _Stamped.model_validate_json('{"at": "2025-03-01T12:00:00"}')


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "2025-03-01T12:00:00"),
        (datetime(2025, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5))), "2025-03-01T12:00:00"),
        (datetime(2025, 3, 1, 12, 0, tzinfo=UTC), "2025-03-01T12:00:00"),
        ("2025-03-01T13:00:00+01:00", "2025-03-01T12:00:00"),
        ("2025-03-01T12:00:00Z", "2025-03-01T12:00:00"),
        (1740830400, "2025-03-01T12:00:00"),
    ],
)
def test_aware_values_become_utc_at_the_same_instant(given: object, expected: str) -> None:
    stamped = _Stamped.model_validate({"at": given})
    assert stamped.at.tzinfo is UTC
    assert stamped.at.replace(tzinfo=None).isoformat() == expected


def test_json_round_trip_keeps_microseconds_and_utc() -> None:
    stamped = _Stamped(at=datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC))
    text = stamped.model_dump_json()
    assert text == '{"at":"2025-03-01T12:00:00.123456Z"}'
    again = _Stamped.model_validate_json(text)
    assert again == stamped
    assert again.at.tzinfo is UTC


def test_utc_now_is_aware_utc() -> None:
    assert utc_now().tzinfo is UTC
