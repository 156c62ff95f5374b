"""Column types that keep the store's promises on every backend: aware UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

SQLITE_TIME_PATTERN: Final = r"(\d+)-(\d+)-(\d+)(?: (\d+):(\d+):(\d+)(?:\.(\d+))?)?"
"""How a stored SQLite time is read: any year 1..9999, also one written unpadded by an older
release (``5-04-19 ...``), so no stored time can crash a reader."""


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns aware UTC datetimes; refuses naive ones on the way in.

    On SQLite the text is zero-padded (``0005-04-19 09:46:40.000000``), so it sorts as time.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(
                sqlite.DATETIME(regexp=SQLITE_TIME_PATTERN)  # type: ignore[no-untyped-call]
            )
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: times must be aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_stored_time(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def sqlite_time_text(value: datetime) -> str:
    """The exact, zero-padded text a UTC time is stored as on SQLite (sorts lexically as time)."""
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def parse_stored_time(value: str) -> datetime:
    """A stored SQLite time as naive UTC, padded or not (an unpadded year never crashes)."""
    day, _, clock = value.strip().partition(" ")
    year, _, rest = day.partition("-")
    if year.isdigit() and len(year) < 4:
        value = f"{int(year):04d}-{rest}" + (f" {clock}" if clock else "")
    return datetime.fromisoformat(value)
