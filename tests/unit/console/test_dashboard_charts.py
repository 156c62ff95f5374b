"""What the dashboards draw from a KPI report: money exact as Decimal text, a chart per currency,
a point per slice with a figure, stages in business order."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from quote2cash.console.call_figures import CallFigures
from quote2cash.console.views.dashboard_window import RANGES, window
from quote2cash.console.views.operations import call_charts, flow_charts
from quote2cash.console.views.revenue import money_charts, percentile_charts, trend_charts
from quote2cash.observability.kpis import Durations, KpiPoint, KpiReport, MoneyRow, OpsPoint

SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
W = window(RANGES["1h"], NOW)
STARTS = [W.since + timedelta(minutes=5 * i) for i in range(12)]


def report(**changes: object) -> KpiReport:
    values: dict[str, object] = {
        "since": W.since,
        "until": W.until,
        "activation": {},
        "invoice_lag": {},
        "amendments_requested": 0,
        "amendments_failed": 0,
        "amendment_failure_rate": None,
        "backlog": {},
        "money": [],
        "series": [KpiPoint(s, None, None, None, 0) for s in STARTS],
        "ops": [OpsPoint(s, 0, 0, 0, {}) for s in STARTS],
    }
    values.update(changes)
    return KpiReport(**values)  # type: ignore[arg-type]


def texts(markup: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(markup).iter(f"{SVG}text")]


def test_money_is_written_from_the_decimal_never_a_float() -> None:
    huge = Decimal("12345678901234567.89")  # a float would print ...568
    money = [
        MoneyRow("US", "USD", huge, Decimal("0.10"), Decimal("0")),
        MoneyRow("DE", "EUR", Decimal("5.5"), Decimal("1E+3"), Decimal("0.30")),
        MoneyRow("CA", "USD", Decimal("1.00"), Decimal("2.00"), Decimal("3.00")),
    ]
    charts = money_charts(report(money=money))
    assert list(charts) == ["money_EUR", "money_USD"]
    usd = texts(charts["money_USD"])
    assert "12,345,678,901,234,567.89 USD" in usd and "0.10 USD" in usd and "3.00 USD" in usd
    assert "EUR" not in " ".join(usd)
    assert "5.5 EUR" in texts(charts["money_EUR"])
    bars = list(ET.fromstring(charts["money_USD"]).iter(f"{SVG}rect"))
    assert len([b for b in bars if "bar" in (b.get("class") or "").split()]) == 6


def test_a_point_per_slice_with_a_figure() -> None:
    series = [
        KpiPoint(s, 60.0 * i if i % 3 == 0 else None, None, 0.5 if i == 4 else None, i)
        for i, s in enumerate(STARTS)
    ]
    charts = trend_charts(W, report(series=series))

    def points(name: str) -> int:
        return len(list(ET.fromstring(charts[name]).iter(f"{SVG}circle")))

    assert points("activation_trend") == 4  # slices 0, 3, 6, 9
    assert (
        points("invoice_lag_trend") == 0 and "No data in this range" in charts["invoice_lag_trend"]
    )
    assert points("amendment_trend") == 1
    assert points("backlog_trend") == 12
    ticks = texts(charts["activation_trend"])
    shown = [f"11:{m:02d}" for m in range(0, 60, 10)]  # 12 slices: every other one labelled
    assert all(t in ticks for t in shown) and "11:05" not in ticks


def test_stages_in_business_order_with_counts() -> None:
    lag = {
        ("US", "crm"): Durations(3, 600.0, 900.0, 900.0),
        ("US", "erp"): Durations(4, 60.0, 120.0, 130.0),
    }
    chart = percentile_charts(report(invoice_lag=lag))["invoice_lag_now"]
    groups = [g.get("data-group") for g in ET.fromstring(chart).iter(f"{SVG}g")]
    assert [g for g in groups if g] == ["US · posted in the ERP", "US · visible in the CRM"]
    assert "1 min (n=4)" in texts(chart) and "15 min" in texts(chart)


def test_a_quiet_hour_has_no_throughput_and_nothing_waiting() -> None:
    charts = flow_charts(W, report())
    for name in ("throughput", "errors", "backlog", "backlog_now"):
        assert "chart-empty" in charts[name], name
    busy = [OpsPoint(s, i, 0, 0, {"erp": 1} if i > 8 else {}) for i, s in enumerate(STARTS)]
    charts = flow_charts(W, report(ops=busy, backlog={"erp": (1, 90.0)}))
    assert "chart-empty" not in charts["throughput"] and "chart-empty" in charts["errors"]
    assert len(list(ET.fromstring(charts["backlog"]).iter(f"{SVG}circle"))) == 12
    assert "1 event, oldest 1.5 min" in texts(charts["backlog_now"])


def test_call_charts_say_when_metrics_are_off() -> None:
    off = call_charts([], measuring=False)
    assert all("Q2C_METRICS_ENABLED=false" in chart for chart in off.values())
    erp = CallFigures("erp", made=8, failed=2, unavailable=1, mean_seconds=0.02, p95_at_most=0.05)
    charts = call_charts([erp])
    assert "25 % of 8 calls; 1 held" in texts(charts["call_errors"])
    assert {"20 ms", "≤ 50 ms"} <= set(texts(charts["call_latency"]))
