"""The business KPIs from a real store (SQLite and PostgreSQL) that the engine filled by running
handlers: each figure equals what the test computes from the history it planned."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.control import pause_system
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.observability.kpi_store import STEP_NAMES
from quote2cash.observability.kpis import Durations, compute_kpis
from support.identity import first_admin, new_operator
from support.kpi_scenario import History, Plan

T0 = datetime(2026, 3, 2, tzinfo=UTC)
FLOWS = Path(__file__).parents[3] / "src" / "quote2cash" / "flows"


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def expected(values: list[float]) -> Durations:
    return Durations(len(values), nearest_rank(values, 50), nearest_rank(values, 95), max(values))


def label(entity: str | None) -> str:
    return entity or "unknown"


async def play(runtime: Runtime, clock: ManualClock, deals: int = 12) -> History:
    """Deals of US, DE and no decided entity in the window, one before it; an invoice per deal
    (some never shown in the CRM, some unpaid); amendments that succeed, fail, die or arrive in
    a side lane; finally work held behind a paused ERP."""
    h = History(runtime, clock)
    early = await h.deal(9000, T0 - timedelta(hours=2), "US")
    await h.invoice(early, 9000, T0 - timedelta(hours=1))
    entities = ["US", "DE", None]
    made = []
    for n in range(deals):
        at = T0 + timedelta(minutes=37 * n + 5)
        made.append(await h.deal(n, at, entities[n % 3], erp=n % 4 != 3))
    for n, deal in enumerate(made):
        at = deal.closed_at + timedelta(hours=6)
        await h.invoice(deal, n, at, crm=n % 5 != 1, paid=n % 3 != 2)
    outcomes = ["done", "exception", "done", "dead", "done"]
    for n, outcome in enumerate(outcomes):
        deal = made[n]
        await h.amendment(deal, n, deal.closed_at + timedelta(hours=12), outcome)
    await h.amendment(made[6], 50, made[6].closed_at + timedelta(hours=12), "done", side_lane=True)
    admin = first_admin(runtime)
    ops = new_operator(runtime, admin, "ops", "operator")
    pause_system(runtime, "erp", by=ops, reason="month-end close", wait=False)
    runtime.gates.refresh(runtime.engine, force=True)
    clock.set(T0 + timedelta(hours=20))
    runtime.log.append(new_event("test.erp.work", "customer:held", {}, time=clock.now()))
    await h.worker.drain()
    return h


def in_window(plan: Plan, since: datetime, until: datetime) -> Plan:
    return Plan(
        [d for d in plan.deals if since <= d.closed_at < until],
        [i for i in plan.invoices if since <= i.finalized_at < until],
        [a for a in plan.amendments if since <= a.at < until],
    )


def test_the_kpis_read_only_step_names_the_flows_use() -> None:
    source = "\n".join(p.read_text() for p in FLOWS.glob("*.py"))
    for name in STEP_NAMES:
        assert re.search(rf'"{re.escape(name)}"', source), name


async def test_kpis_match_the_planned_history(runtime: Runtime, clock: ManualClock) -> None:
    h = await play(runtime, clock)
    since, until = T0, T0 + timedelta(hours=24)
    report = compute_kpis(runtime.engine, since=since, until=until, buckets=6)
    plan = in_window(h.plan, since, until)
    assert len(plan.deals) == 12 and len(h.plan.deals) == 13

    activation: dict[tuple[str, str], list[float]] = defaultdict(list)
    for d in plan.deals:
        activation[(label(d.entity), "billing")].append(d.billing_after)
        if d.erp_after is not None:
            activation[(label(d.entity), "erp")].append(d.erp_after)
    assert report.activation == {k: expected(v) for k, v in activation.items()}

    lag: dict[tuple[str, str], list[float]] = defaultdict(list)
    for i in plan.invoices:
        lag[(label(i.deal.entity), "erp")].append(i.erp_after)
        if i.crm_after is not None:
            lag[(label(i.deal.entity), "crm")].append(i.crm_after)
    assert report.invoice_lag == {k: expected(v) for k, v in lag.items()}

    failed = [a for a in plan.amendments if a.outcome in ("exception", "dead")]
    assert report.amendments_requested == len(plan.amendments) == 6
    assert report.amendments_failed == len(failed) == 2
    assert report.amendment_failure_rate == pytest.approx(2 / 6)

    money: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for d in plan.deals:
        if d.erp_after is not None:
            money[(label(d.entity), d.currency)][0] += sum(d.lines, Decimal(0))
    for i in plan.invoices:
        row = money[(label(i.deal.entity), i.deal.currency)]
        row[1] += i.total
        row[2] += i.paid or Decimal(0)
    got = {(m.entity, m.currency): [m.bookings, m.billings, m.collections] for m in report.money}
    assert got == dict(money)
    assert all(isinstance(v, Decimal) for row in got.values() for v in row)

    held_since = T0 + timedelta(hours=20)
    assert report.backlog["erp"] == (1, (until - held_since).total_seconds())
    assert report.backlog["billing"][0] == 1  # the dead-lettered amendment, failed on billing
    assert report.backlog["none"][0] == 1  # the amendment in the exception queue


async def test_the_series_slices_the_window(runtime: Runtime, clock: ManualClock) -> None:
    h = await play(runtime, clock)
    since, until = T0, T0 + timedelta(hours=24)
    report = compute_kpis(runtime.engine, since=since, until=until, buckets=4)
    assert [p.start for p in report.series] == [T0 + timedelta(hours=6 * i) for i in range(4)]
    assert [p.start for p in report.ops] == [p.start for p in report.series]
    plan = in_window(h.plan, since, until)
    for i, point in enumerate(report.series):
        start, end = T0 + timedelta(hours=6 * i), T0 + timedelta(hours=6 * (i + 1))
        erp = [d.erp_after for d in plan.deals if start <= d.closed_at < end and d.erp_after]
        crm = [x.crm_after for x in plan.invoices if start <= x.finalized_at < end and x.crm_after]
        asked = [a for a in plan.amendments if start <= a.at < end]
        assert point.activation_p95 == (nearest_rank(erp, 95) if erp else None)
        assert point.invoice_lag_p95 == (nearest_rank(crm, 95) if crm else None)
        rate = sum(a.outcome != "done" for a in asked) / len(asked) if asked else None
        assert point.amendment_failure_rate == rate
    # Three events still wait at the end: held behind the ERP, dead-lettered, in exceptions.
    assert report.series[-1].backlog == 3
    assert report.ops[-1].backlog == {"erp": 1, "billing": 1, "none": 1}
    assert sum(p.dead_lettered for p in report.ops) == 1
    assert sum(p.failed for p in report.ops) == 2  # the dying one's first try, the exception
    assert sum(p.handled for p in report.ops) > 0


async def test_to_json_is_the_report(runtime: Runtime, clock: ManualClock) -> None:
    await play(runtime, clock, deals=7)
    report = compute_kpis(runtime.engine, since=T0, until=T0 + timedelta(hours=24), buckets=2)
    data = report.to_json()
    assert data["since"] == T0.isoformat()
    assert {(r["entity"], r["stage"]) for r in data["activation"]} == set(report.activation)
    for row, money in zip(data["money"], report.money, strict=True):
        assert Decimal(row["bookings"]) == money.bookings
        assert isinstance(row["billings"], str)
    assert data["amendments"]["requested"] == report.amendments_requested
    assert len(data["series"]) == len(data["ops"]) == 2


def test_an_empty_window_has_no_figures(runtime: Runtime) -> None:
    report = compute_kpis(runtime.engine, since=T0, until=T0 + timedelta(hours=1), buckets=3)
    assert report.activation == {} and report.money == [] and report.backlog == {}
    assert report.amendment_failure_rate is None
    assert [p.backlog for p in report.series] == [0, 0, 0]
    with pytest.raises(ValueError, match="not before"):
        compute_kpis(runtime.engine, since=T0, until=T0)
