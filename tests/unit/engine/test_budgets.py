"""Budget arithmetic (the bucket every backend computes), systems.yaml validation, and the
gate's one synchronous check per call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quote2cash.connectors.registry import SystemsConfigError, budgets_from_file
from quote2cash.engine.budgets import (
    DAY,
    MAX_SLEEP_SECONDS,
    BucketState,
    Budget,
    BudgetConfigError,
    budgets_from_mapping,
    reserve,
)
from quote2cash.engine.budgets_memory import MemoryBudgets
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.errors import SystemUnavailable, TransientError
from quote2cash.engine.systems import (
    SystemGates,
    call_in_progress,
    report_usage,
    request_token,
    reset_call,
)

T0 = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)


def valid_times(grant_tokens: float, rate: float, count: int) -> list[float]:
    """Seconds from the grant until each of its tokens is valid (the lane's formula)."""
    return [max(0.0, (i - grant_tokens) / rate) for i in range(1, count + 1)]


def test_a_full_bucket_grants_its_burst_at_once_then_one_token_per_interval() -> None:
    budget = Budget("billing", "writes", rate=10, burst=3)
    state = BucketState(3.0, T0)
    first = reserve(state, budget, 5, T0)
    assert first.count == 5
    assert valid_times(first.tokens, first.rate, 5) == pytest.approx([0, 0, 0, 0.1, 0.2])
    assert state.tokens == pytest.approx(-2.0)
    # half a second later the debt is paid and 3 more tokens accrued, capped at the burst
    later = reserve(state, budget, 1, T0 + timedelta(seconds=0.5))
    assert later.tokens == pytest.approx(3.0)
    assert valid_times(later.tokens, later.rate, 1) == [0.0]


def test_a_bucket_in_debt_makes_the_next_reservation_wait_behind_it() -> None:
    budget = Budget("billing", "writes", rate=4, burst=1)
    state = BucketState(1.0, T0)
    reserve(state, budget, 1, T0)
    second = reserve(state, budget, 2, T0)
    assert valid_times(second.tokens, second.rate, 2) == pytest.approx([0.25, 0.5])


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=200),
    burst=st.integers(min_value=1, max_value=50),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.5), st.integers(min_value=1, max_value=8)),
        min_size=1,
        max_size=60,
    ),
)
def test_tokens_valid_in_any_window_never_exceed_burst_plus_rate_times_window(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    budget = Budget("billing", "writes", rate=rate, burst=burst)
    state = BucketState(float(burst), T0)
    now, valid = 0.0, []
    for gap, n in steps:
        now += gap
        grant = reserve(state, budget, n, T0 + timedelta(seconds=now))
        valid += [now + v for v in valid_times(grant.tokens, grant.rate, grant.count)]
    valid.sort()
    for i, start in enumerate(valid):
        for j in range(i, len(valid)):
            window = valid[j] - start
            # times are kept to the microsecond (timedelta, PostgreSQL): allow that much
            assert j - i + 1 <= burst + rate * (window + 2e-6) + 1e-9


def test_a_day_allocation_grants_what_is_left_then_holds_until_the_day_ends() -> None:
    budget = Budget("crm", "api", per_day=5)
    state = BucketState(0.0, T0)
    assert reserve(state, budget, 3, T0).count == 3
    assert reserve(state, budget, 3, T0 + timedelta(hours=1)).count == 2
    held = reserve(state, budget, 1, T0 + timedelta(hours=2))
    assert held.count == 0
    assert held.hold_seconds == pytest.approx(timedelta(hours=22).total_seconds())
    assert "daily allocation of 5 used" in held.reason
    assert reserve(state, budget, 1, T0 + DAY).count == 1  # a new day


def test_a_retry_after_hold_grants_nothing_until_it_ends() -> None:
    budget = Budget("billing", "writes", rate=10, burst=2)
    state = BucketState(2.0, T0, blocked_until=T0 + timedelta(seconds=3))
    held = reserve(state, budget, 1, T0 + timedelta(seconds=1))
    assert (held.count, held.hold_seconds) == (0, pytest.approx(2.0))
    assert "Retry-After" in held.reason
    assert state.tokens == 2.0  # a refused reservation spends nothing
    assert reserve(state, budget, 1, T0 + timedelta(seconds=3)).count == 1


def test_budgets_from_systems_yaml_with_defaults_and_operation_patterns() -> None:
    [reads, writes] = budgets_from_mapping(
        "billing",
        {
            "reads": {"rate": 25, "operations": ["get_*", "list_*"]},
            "writes": {"rate": 12.5, "burst": 5, "per_day": 1000, "concurrency": 4},
        },
        source="systems.yaml",
    )
    assert (reads.key, reads.burst, reads.rate) == ("billing:reads", 25, 25.0)
    assert reads.matches("get_invoice") and not reads.matches("create_customer")
    assert writes.matches("create_customer")  # no patterns: every operation
    assert (writes.per_day, writes.concurrency, writes.lease_size) == (1000, 4, 1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rate": -1}, "billing.budgets.writes.rate: expected a number > 0, got -1"),
        ({"rate": "fast"}, "billing.budgets.writes.rate: expected a number, got 'fast'"),
        ({"rate": 5, "burst": 0}, "writes.burst: expected a whole number >= 1, got 0"),
        ({"burst": 3}, "give at least one of rate, per_day, concurrency"),
        ({"per_day": 10, "burst": 3}, "writes.burst: a burst needs a rate"),
        ({"rate": 5, "speed": 1}, "unknown field(s) ['speed']"),
        ({"rate": 5, "operations": [1]}, "writes.operations: expected a list of operation"),
        ({"concurrency": 2.5}, "writes.concurrency: expected a whole number >= 1, got 2.5"),
        ("fast", "billing.budgets.writes: expected a mapping"),
    ],
)
def test_a_bad_budget_names_the_file_the_budget_and_the_field(spec: object, message: str) -> None:
    with pytest.raises(BudgetConfigError) as err:
        budgets_from_mapping("billing", {"writes": spec}, source="systems.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("systems.yaml: billing.budgets")


def test_systems_yaml_budgets_are_read_without_building_connectors(tmp_path: Path) -> None:
    path = tmp_path / "systems.yaml"
    path.write_text(
        "crm:\n  kind: salesforce\n  settings: {client_secret: '${NOT_SET}'}\n"
        "  budgets:\n    api: {per_day: 101000, rate: 5}\n"
        "erp:\n  budgets:\n    posting: {concurrency: 4}\n",
        encoding="utf-8",
    )
    budgets = budgets_from_file(path)
    assert [(b.key, b.per_day, b.concurrency) for b in budgets] == [
        ("crm:api", 101000, None),
        ("erp:posting", None, 4),
    ]
    path.write_text("erp:\n  budget:\n    posting: {concurrency: 4}\n", encoding="utf-8")
    with pytest.raises(SystemsConfigError, match=r"erp has unknown key\(s\) \['budget'\]"):
        budgets_from_file(path)


def gates_with(*budgets: Budget) -> SystemGates:
    gates = SystemGates(ManualClock(T0))
    gates.configure_budgets(budgets, MemoryBudgets())
    return gates


def test_the_common_path_is_one_synchronous_check_with_no_new_objects() -> None:
    gates = gates_with(Budget("billing", "writes", rate=1000, burst=100))

    async def run() -> None:
        first = await gates.enter_waiting("billing", "billing.create_customer")  # fetches a lease
        gates.leave(first, None, 0.0)
        again = gates.enter("billing", "billing.create_customer")
        assert again is first  # the pass is made once per step name, not per call
        gates.leave(again, None, 0.0)

    asyncio.run(run())
    [_, lane] = gates.gate_pass("billing", "billing.create_customer").lanes
    assert lane.used == 2 and lane.count == lane.budget.lease_size


def test_calls_queued_on_a_budget_share_one_reservation_and_keep_its_rate() -> None:
    """Stripe's 25/s leases one token a round trip; calls waiting together reserve theirs at
    once (up to the burst), each token still valid no sooner than the rate allows."""
    backend = MemoryBudgets()
    asked: list[int] = []
    reserve_one = backend.reserve

    def counted(budget: Budget, n: int) -> object:
        asked.append(n)
        return reserve_one(budget, n)

    backend.reserve = counted  # type: ignore[method-assign,assignment]
    gates = SystemGates(ManualClock(T0))
    gates.configure_budgets([Budget("billing", "api", rate=25, burst=5)], backend)
    started: list[float] = []

    async def call() -> None:
        gate = await gates.enter_waiting("billing", "billing.create_subscription")
        started.append(asyncio.get_running_loop().time())
        gates.leave(gate, None, 0.0)

    async def run() -> None:
        await asyncio.gather(*(call() for _ in range(12)))

    asyncio.run(run())
    assert len(started) == 12
    assert sum(asked) >= 12 and len(asked) < 12  # fewer round trips than calls
    assert max(asked) <= 5  # never more than the burst at once
    assert started[-1] - started[0] >= (12 - 5) / 25 * 0.9  # past the burst, 25/s at most


def test_only_the_matching_budgets_gate_a_step() -> None:
    gates = gates_with(
        Budget("billing", "reads", rate=10, operations=("get_*",)),
        Budget("billing", "writes", rate=10),
        Budget("crm", "api", per_day=10),
    )
    names = [lane.budget.name for lane in gates.gate_pass("billing", "billing.get_invoice").lanes]
    assert names == ["process", "reads", "writes"]
    names = [lane.budget.name for lane in gates.gate_pass("billing", "billing.pay").lanes]
    assert names == ["process", "writes"]


def test_a_429_with_retry_after_holds_the_budget_and_its_work() -> None:
    gates = gates_with(Budget("billing", "writes", rate=100, burst=10))

    async def run() -> None:
        gate = await gates.enter_waiting("billing", "billing.create_customer")
        refused = TransientError("rate limited", system="billing", retry_after=30, throttled=True)
        gates.leave(gate, refused, 0.0)
        assert gates.enter("billing", "billing.create_customer") is None
        with pytest.raises(SystemUnavailable) as held:
            await gates.enter_waiting("billing", "billing.create_customer")
        assert "Retry-After" in held.value.reason
        assert held.value.until is not None

    asyncio.run(run())


def test_a_wait_longer_than_the_sleep_bound_holds_the_work_instead_of_sleeping() -> None:
    rate = 1 / (MAX_SLEEP_SECONDS * 3)
    gates = gates_with(Budget("billing", "writes", rate=rate, burst=1))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    gates.sleep = sleep

    async def run() -> None:
        gate = await gates.enter_waiting("billing", "billing.pay")
        gates.leave(gate, None, 0.0)
        with pytest.raises(SystemUnavailable, match="over its budget"):
            await gates.enter_waiting("billing", "billing.pay")

    asyncio.run(run())
    assert slept == []


def test_the_systems_own_usage_count_spends_the_shared_day_allocation() -> None:
    backend = MemoryBudgets()
    gates = SystemGates(ManualClock(T0))
    budget = Budget("crm", "api", per_day=100)
    gates.configure_budgets([budget], backend)
    report_usage("crm", 90, 100)  # Sforce-Limit-Info: api-usage=90/100, other clients included
    assert backend.reserve(budget, 20).count == 10
    assert backend.reserve(budget, 1).count == 0


def test_each_further_request_of_a_step_takes_a_token_and_no_second_slot() -> None:
    """Stripe counts requests, not steps: a step that looks up a price, then creates a coupon
    and a subscription spends three tokens of its budget (issue 17's quarter-end benchmark)."""
    gates = gates_with(Budget("billing", "writes", rate=1000, burst=100, concurrency=2))
    seen: list[tuple[int, int]] = []

    async def run() -> None:
        gate = await gates.enter_waiting("billing", "billing.create_subscription")
        lane = gate.lanes[-1]
        call = call_in_progress(gates, gate)
        try:
            for _ in range(3):  # the first request was paid at the gate
                await request_token("billing")
                seen.append((lane.used, lane.in_use))
            await request_token("crm")  # not this step's system: nothing taken
        finally:
            reset_call(call)
        await request_token("billing")  # outside a step (polling): nothing taken
        gates.leave(gate, None, 0.0)

    asyncio.run(run())
    assert seen == [(1, 1), (2, 1), (3, 1)]
    lane = gates.gate_pass("billing", "billing.create_subscription").lanes[-1]
    assert (lane.used, lane.in_use) == (3, 0)
