"""The emulators' server-side count of calls above a budget (sandbox/budget_window.py)."""

from __future__ import annotations

import pytest

from quote2cash.sandbox.budget_window import BudgetWindow


def test_calls_within_rate_and_burst_are_not_over_budget() -> None:
    window = BudgetWindow()
    window.configure(rate=25, burst=5)
    # 30 calls in the same instant: the burst plus one second's rate, none over
    assert not any(window.arrive(100.0) for _ in range(30))
    assert window.arrive(100.5) is True  # the 31st inside the same second
    assert window.over_budget == 1
    assert window.peak == 31


def test_the_window_slides_calls_out_after_a_second() -> None:
    window = BudgetWindow()
    window.configure(rate=2, burst=0)
    times = (0.0, 0.5, 0.9, 1.0, 1.4, 1.6, 2.5)
    assert [window.arrive(t) for t in times] == [False, False, True, True, True, True, False]
    assert window.over_budget == 4


def test_no_rate_counts_nothing_and_bad_values_name_the_field() -> None:
    window = BudgetWindow()
    assert window.arrive(1.0) is False and window.calls == 0
    with pytest.raises(ValueError, match="budget_rate"):
        window.configure(rate=0)
    with pytest.raises(ValueError, match="budget_window_seconds"):
        window.configure(rate=1, window=-1)
