"""The IT-operations dashboard: throughput, errors and backlog per system over the chosen range
(from the store, so every hub process agrees), call latency and error share per system (this
process's instruments), and each system's breaker, pause and maintenance state."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web
from markupsafe import Markup

from quote2cash.console.call_figures import CallFigures, read_call_figures
from quote2cash.console.charts import (
    Bar,
    BarGroup,
    Series,
    bar_chart,
    count_ceiling,
    duration,
    line_chart,
    percent,
)
from quote2cash.console.context import console_of
from quote2cash.console.render import page
from quote2cash.console.views.dashboard_window import RANGES, Window, range_of, window
from quote2cash.console.views.systems import read_systems
from quote2cash.observability import metrics
from quote2cash.observability.kpis import KpiReport, compute_kpis


def _events(n: int) -> str:
    return f"{n} event" if n == 1 else f"{n} events"


def flow_charts(w: Window, report: KpiReport) -> dict[str, Markup]:
    """Throughput, errors and backlog per system, a point per slice; the backlog now."""
    labels = w.labels(p.start for p in report.ops)
    handled = [p.handled for p in report.ops]
    failed = [p.failed for p in report.ops]
    dead = [p.dead_lettered for p in report.ops]
    systems = sorted({s for p in report.ops for s in p.backlog})
    charts = {
        "throughput": line_chart(
            "throughput",
            "Throughput: events handled per slice",
            labels,
            [Series("handled", [float(v) for v in handled])] if any(handled) else [],
            y_label="events",
            y_top=count_ceiling,
        ),
        "errors": line_chart(
            "errors",
            "Errors: failed attempts and dead letters per slice",
            labels,
            [
                Series("failed attempts", [float(v) for v in failed]),
                Series("dead-lettered", [float(v) for v in dead]),
            ]
            if any(failed) or any(dead)
            else [],
            y_label="events",
            y_top=count_ceiling,
            empty="No failure in this range",
        ),
        "backlog": line_chart(
            "backlog",
            "Backlog per system at each slice's end",
            labels,
            [Series(s, [float(p.backlog.get(s, 0)) for p in report.ops]) for s in systems],
            y_label="events waiting",
            y_top=count_ceiling,
            empty="No work waited in this range",
        ),
        "backlog_now": bar_chart(
            "backlog_now",
            "Backlog now, with the oldest waiting event's age",
            [
                BarGroup(
                    system,
                    [
                        Bar(
                            "events waiting",
                            float(events),
                            _events(events)
                            + (f", oldest {duration(age)}" if age is not None else ""),
                        )
                    ],
                )
                for system, (events, age) in sorted(report.backlog.items())
            ],
            value_label="events waiting now",
            empty="Nothing is waiting now",
        ),
    }
    return charts


def call_charts(calls: list[CallFigures], *, measuring: bool = True) -> dict[str, Markup]:
    """Latency and failed share of calls per system, as this process measured them."""
    off = "This process's metrics are off (Q2C_METRICS_ENABLED=false)"
    timed = [c for c in calls if c.mean_seconds is not None]
    latency = bar_chart(
        "call_latency",
        "Call latency per system (this process, since it started)",
        [BarGroup(c.system, _latency_bars(c)) for c in timed],
        value_label="time per call",
        empty="No call measured by this process yet" if measuring else off,
    )
    made = [c for c in calls if c.made]
    errors = bar_chart(
        "call_errors",
        "Failed share of calls per system (this process, since it started)",
        [
            BarGroup(
                c.system,
                [Bar("failed / made", c.error_ratio or 0.0, _share(c))],
            )
            for c in made
        ],
        value_label="share of calls made that failed (transient or permanent)",
        empty="No call made by this process yet" if measuring else off,
    )
    return {"call_latency": latency, "call_errors": errors}


def _latency_bars(c: CallFigures) -> list[Bar]:
    mean = c.mean_seconds or 0.0
    bars = [Bar("mean", mean, duration(mean))]
    if c.p95_at_most is not None:
        if math.isinf(c.p95_at_most):
            bars.append(Bar("p95 at most", mean, "p95 above the largest bucket"))
        else:
            bars.append(Bar("p95 at most", c.p95_at_most, f"≤ {duration(c.p95_at_most)}"))
    return bars


def _share(c: CallFigures) -> str:
    text = f"{percent(c.error_ratio or 0.0)} of {c.made} calls"
    return text + (f"; {c.unavailable} held" if c.unavailable else "")


async def operations(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    chosen = range_of(request)

    def read() -> tuple[Window, KpiReport, list[dict[str, Any]]]:
        w = window(chosen, console.runtime.clock.now())
        report = compute_kpis(
            console.runtime.engine, since=w.since, until=w.until, buckets=chosen.slices
        )
        return w, report, read_systems(console.runtime)

    w, report, systems = await console.store(read)
    charts = flow_charts(w, report) | call_charts(read_call_figures(), measuring=metrics.enabled())
    return page(request, "ops.html", window=w, ranges=list(RANGES), charts=charts, systems=systems)
