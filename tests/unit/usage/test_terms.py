"""Billing periods from a subscription's cycle anchor, and terms read from billing's snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quote2cash.usage.terms import DEFAULT_UNIT, SubscriptionTerms, terms_from_snapshot


def _terms(anchor: datetime, interval: str = "month", count: int = 1) -> SubscriptionTerms:
    return SubscriptionTerms(
        subscription="SUB-1",
        references=("SUB-1",),
        customer=None,
        subject="contract:C-1",
        items=(),
        service_start=anchor,
        service_end=None,
        cycle_anchor=anchor,
        interval=interval,
        interval_count=count,
    )


def d(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("anchor", "at", "start", "end"),
    [
        (d(2026, 1, 15), d(2026, 3, 20), d(2026, 3, 15), d(2026, 4, 15)),
        (d(2026, 1, 15), d(2026, 3, 14, 23, 59), d(2026, 2, 15), d(2026, 3, 15)),
        (d(2026, 1, 15), d(2026, 3, 15), d(2026, 3, 15), d(2026, 4, 15)),
        (d(2026, 1, 31), d(2026, 2, 28, 12), d(2026, 2, 28), d(2026, 3, 31)),
        (d(2026, 1, 31), d(2026, 2, 27), d(2026, 1, 31), d(2026, 2, 28)),
        (d(2025, 11, 30), d(2026, 2, 28), d(2026, 2, 28), d(2026, 3, 30)),
    ],
)
def test_monthly_periods_count_from_the_anchor_clipping_the_day(
    anchor: datetime, at: datetime, start: datetime, end: datetime
) -> None:
    assert _terms(anchor).period_of(at) == (start, end)


def test_yearly_and_weekly_periods() -> None:
    assert _terms(d(2025, 6, 1), "year").period_of(d(2026, 5, 31)) == (d(2025, 6, 1), d(2026, 6, 1))
    assert _terms(d(2026, 1, 5), "week", 2).period_of(d(2026, 1, 20)) == (
        d(2026, 1, 19),
        d(2026, 2, 2),
    )


def test_snapshot_gives_metered_items_aliases_unit_and_current_period() -> None:
    snapshot = {
        "object": "subscription",
        "id": "sub_9",
        "customer": "cus_9",
        "status": "active",
        "start_date": int(d(2026, 1, 15).timestamp()),
        "items": {
            "data": [
                {"price": {"id": "price_seat", "recurring": {"usage_type": "licensed"}}},
                {
                    "current_period_start": int(d(2026, 3, 15).timestamp()),
                    "price": {
                        "id": "price_api",
                        "lookup_key": "api_calls_usd",
                        "recurring": {
                            "interval": "month",
                            "usage_type": "metered",
                            "meter": "mtr_1",
                        },
                    },
                },
            ]
        },
    }
    terms = terms_from_snapshot(snapshot, "SUB-9", "C-9")
    assert terms is not None
    assert terms.references == ("SUB-9", "C-9", "sub_9")
    assert terms.subject == "contract:C-9"
    [item] = terms.items
    assert item.meter == "mtr_1" and item.unit == DEFAULT_UNIT
    assert set(item.aliases) >= {"mtr_1", "api_calls_usd", "price_api"}
    assert "price_seat" not in item.aliases
    assert terms.closed_before == d(2026, 3, 15)
    assert terms.service_end is None
    assert terms_from_snapshot({"object": "subscription", "id": "x"}, None, None) is None
