"""Where a posting's meter event is placed in time: now, inside the period's whole minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from quote2cash.flows.usage_posting import counted_at

START = datetime(2026, 1, 1, 12, 34, 56, tzinfo=UTC)
END = datetime(2026, 2, 1, 12, 34, 56, tzinfo=UTC)


def test_now_inside_the_period_is_kept() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    assert counted_at(now, START, END) == now


def test_a_clock_ahead_or_behind_lands_on_the_periods_whole_minutes() -> None:
    assert counted_at(datetime(2027, 1, 1, tzinfo=UTC), START, END) == datetime(
        2026, 2, 1, 12, 33, 59, tzinfo=UTC
    )
    assert counted_at(datetime(2025, 1, 1, tzinfo=UTC), START, END) == datetime(
        2026, 1, 1, 12, 35, tzinfo=UTC
    )


@given(
    start=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    length=st.integers(min_value=1, max_value=400 * 86400),
    offset=st.integers(min_value=-500 * 86400, max_value=500 * 86400),
)
def test_always_inside_the_period(start: datetime, length: int, offset: int) -> None:
    start = start.replace(microsecond=0)
    end = start + timedelta(seconds=length)
    at = counted_at(start + timedelta(seconds=offset), start, end)
    assert start <= at < end
    if (end - start) >= timedelta(minutes=2):
        assert at.timestamp() // 60 * 60 >= start.timestamp()
        assert at.timestamp() // 60 * 60 + 60 <= end.timestamp()
