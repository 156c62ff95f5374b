"""Both dashboards in headless Chromium over a store the engine filled by running handlers (a
day of deals, invoices, payments and amendments, some failing, then work held behind a paused
ERP): the charts are drawn with a point per slice that has a figure and a bar per entity,
stage and amount, as the plan says. Screenshots go to ``$Q2C_CONSOLE_SCREENSHOTS`` if set."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from integration.console.people import make_admin, make_operator
from integration.console.site import served_runtime
from quote2cash.console.charts import duration
from quote2cash.console.views.dashboard_window import RANGES
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.control import pause_system
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from support.kpi_scenario import History, Plan

SHOTS = os.environ.get("Q2C_CONSOLE_SCREENSHOTS")
"""A folder (e.g. docs/) to copy the two dashboards' screenshots into."""
T0 = datetime(2026, 12, 1, tzinfo=UTC)
DAY = RANGES["24h"]
SLICE = DAY.length / DAY.slices
ENTITIES = ["US", "DE", None, "US"]
HELD = [T0 + timedelta(hours=21, minutes=20 * n) for n in range(3)]
AMENDMENTS = ["done", "exception", "done", "dead", "done", "done", "exception", "done"]


@dataclass
class Day:
    url: str
    password: str
    plan: Plan


async def play(runtime: Runtime, clock: ManualClock) -> Plan:
    """A day of business in ``[T0, T0 + 24 h)``; at its end the ERP is paused with work held."""
    h = History(runtime, clock, seed=12)
    deals = [
        await h.deal(n, T0 + timedelta(minutes=50 * n + 3), ENTITIES[n % 4], erp=n % 5 != 4)
        for n in range(22)
    ]
    for n, deal in enumerate(deals):
        at = deal.closed_at + timedelta(hours=2)
        await h.invoice(deal, n, at, crm=n % 6 != 1, paid=n % 3 != 2)
    for n, outcome in enumerate(AMENDMENTS):
        deal = deals[2 * n]
        await h.amendment(deal, n, deal.closed_at + timedelta(hours=3), outcome)
    make_operator(runtime, make_admin(runtime), "olivia", ["operator"])
    olivia = Operator("olivia", frozenset({"operator"}), via="password")
    pause_system(runtime, "erp", by=olivia, reason="month-end close", wait=False)
    runtime.gates.refresh(runtime.engine, force=True)
    for n, at in enumerate(HELD):
        clock.set(at)
        runtime.log.append(new_event("test.erp.work", f"customer:held{n}", {}, time=clock.now()))
        await h.worker.drain()
    clock.set(T0 + DAY.length)
    return h.plan


@pytest.fixture
async def day(tmp_path: Path) -> AsyncIterator[Day]:
    clock = ManualClock(T0)
    runtime = Runtime.open(
        f"sqlite:///{tmp_path / 'day.sqlite'}", clock=clock, sqlite_synchronous="NORMAL"
    )
    try:
        plan = await play(runtime, clock)
        admin = Operator("admin", frozenset({"admin"}), via="password")
        password = make_operator(runtime, admin, "victor", ["viewer"])
        async with served_runtime(runtime) as url:
            yield Day(url, password, plan)
    finally:
        runtime.close()


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def viewer_page(browser: Browser, day: Day) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(f"{day.url}/console/revenue")
    await page.fill("input[name=name]", "victor")
    await page.fill("input[name=password]", day.password)
    await page.click("button:has-text('Sign in')")
    await expect(page.locator("header .who")).to_contain_text("victor")
    return page


def keep(*shots: Path) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, Path(SHOTS) / shot.name)


def slices_with(times: list[datetime]) -> int:
    return len({int((t - T0) / SLICE) for t in times if T0 <= t < T0 + DAY.length})


def label(entity: str | None) -> str:
    return entity or "unknown"


async def test_both_dashboards_draw_the_days_figures(
    day: Day, browser: Browser, tmp_path: Path
) -> None:
    plan = day.plan
    page = await viewer_page(browser, day)
    await expect(page).to_have_url(f"{day.url}/console/revenue")
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))

    trend = page.locator("svg[data-chart=activation_trend] circle")
    await expect(trend).to_have_count(slices_with([d.closed_at for d in plan.deals if d.erp_after]))
    lag = page.locator("svg[data-chart=invoice_lag_trend] circle")
    await expect(lag).to_have_count(
        slices_with([i.finalized_at for i in plan.invoices if i.crm_after])
    )
    amendments = page.locator("svg[data-chart=amendment_trend] circle")
    await expect(amendments).to_have_count(slices_with([a.at for a in plan.amendments]))
    await expect(page.locator("svg[data-chart=backlog_trend] circle")).to_have_count(DAY.slices)

    stages = {(label(d.entity), "billing") for d in plan.deals}
    stages |= {(label(d.entity), "erp") for d in plan.deals if d.erp_after}
    activation = page.locator("svg[data-chart=activation_now] rect.bar")
    await expect(activation).to_have_count(2 * len(stages))  # p50 and p95 per entity and stage

    money: dict[str, dict[str, list[Decimal]]] = defaultdict(dict)
    for d in plan.deals:
        money[d.currency].setdefault(label(d.entity), [Decimal(0)] * 3)
        if d.erp_after:
            money[d.currency][label(d.entity)][0] += sum(d.lines, Decimal(0))
    for i in plan.invoices:
        row = money[i.deal.currency][label(i.deal.entity)]
        row[1] += i.total
        row[2] += i.paid or Decimal(0)
    assert set(money) == {"USD", "EUR"}
    for currency, rows in money.items():
        chart = page.locator(f"svg[data-chart=money_{currency}]")
        await expect(chart.locator("rect.bar")).to_have_count(3 * len(rows))
        for entity, (bookings, billings, collections) in rows.items():
            group = chart.locator(f"g[data-group='{entity}']")
            for amount in (bookings, billings, collections):
                await expect(group).to_contain_text(f"{amount:,} {currency}")
    asked, failed = len(plan.amendments), sum(a.outcome != "done" for a in plan.amendments)
    await expect(page.locator("dl.headline")).to_contain_text(f"{asked} requested, {failed} failed")
    revenue_png = tmp_path / "observability-revenue.png"
    await page.screenshot(path=str(revenue_png), full_page=True)

    await page.click("header nav a:has-text('Operations')")
    await expect(page).to_have_url(f"{day.url}/console/operations")
    await expect(page.locator("svg[data-chart=throughput] circle")).to_have_count(DAY.slices)
    errors = page.locator("svg[data-chart=errors]")
    await expect(errors.locator("circle[data-series='failed attempts']")).to_have_count(DAY.slices)
    await expect(errors.locator("circle[data-series='dead-lettered']")).to_have_count(DAY.slices)
    # Waiting now: the held ERP work, the dead-lettered amendment (on billing), the amendments in
    # the exception queue (no system): a bar each, with the oldest age.
    backlog_now = page.locator("svg[data-chart=backlog_now]")
    await expect(backlog_now.locator("rect.bar")).to_have_count(3)
    oldest = duration((T0 + DAY.length - HELD[0]).total_seconds())
    erp_now = backlog_now.locator("g[data-group=erp]")
    await expect(erp_now).to_contain_text(f"{len(HELD)} events, oldest {oldest}")
    backlog = page.locator("svg[data-chart=backlog]")
    systems = await backlog.locator("g.legend text").all_text_contents()
    assert {"erp", "billing", "none"} <= set(systems)
    await expect(backlog.locator("circle")).to_have_count(len(systems) * DAY.slices)
    await expect(page.locator("#state-erp")).to_contain_text("paused by olivia")
    await expect(page.locator("#state-billing")).to_contain_text("available")
    for system in ("billing", "crm", "erp"):
        calls = page.locator(f"svg[data-chart=call_latency] g[data-group={system}] rect.bar")
        await expect(calls).to_have_count(2)  # mean and the p95's bucket
    operations_png = tmp_path / "observability-operations.png"
    await page.screenshot(path=str(operations_png), full_page=True)

    await page.click("nav.ranges a:has-text('last 1h')")
    await expect(page.locator("svg[data-chart=throughput]")).to_contain_text("No data in this")
    assert not [m for m in messages if "Content Security Policy" in m]

    keep(revenue_png, operations_png)
