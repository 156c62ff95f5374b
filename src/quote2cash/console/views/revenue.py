"""The revenue-operations dashboard: the seed's four KPIs over the chosen range, the p50 / p95
per legal entity and stage, and bookings, billings and collections per entity and currency
(amounts written exactly, as Decimal with their currency; only bar lengths are floats)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Final

from aiohttp import web
from markupsafe import Markup

from quote2cash.console.charts import (
    Bar,
    BarGroup,
    Series,
    bar_chart,
    count_ceiling,
    duration,
    duration_ceiling,
    line_chart,
    percent,
    plain,
)
from quote2cash.console.context import console_of
from quote2cash.console.render import page
from quote2cash.console.views.dashboard_window import RANGES, Window, range_of, window
from quote2cash.observability.kpis import MONEY_KINDS, Durations, KpiReport, compute_kpis

ACTIVATION_STAGE_NAMES: Final = {"billing": "active in billing", "erp": "booked in the ERP"}
INVOICE_STAGE_NAMES: Final = {"erp": "posted in the ERP", "crm": "visible in the CRM"}


def amount_text(amount: Decimal, currency: str) -> str:
    """``1,234.50 USD``: the Decimal as stored, grouped, with its ISO currency."""
    return f"{amount:,} {currency}"


def trend_charts(w: Window, report: KpiReport) -> dict[str, Markup]:
    """The four KPIs, a point per slice that has a figure."""
    labels = w.labels(p.start for p in report.series)
    backlog = [float(p.backlog) for p in report.series]
    return {
        "activation_trend": line_chart(
            "activation_trend",
            "Order activation time: Closed Won -> booked in the ERP, p95",
            labels,
            [Series("activation p95", [p.activation_p95 for p in report.series])],
            y_label="p95 of the slice",
            y_text=duration,
            y_top=duration_ceiling,
        ),
        "invoice_lag_trend": line_chart(
            "invoice_lag_trend",
            "Invoice generation lag: finalised in billing -> visible in the CRM, p95",
            labels,
            [Series("invoice lag p95", [p.invoice_lag_p95 for p in report.series])],
            y_label="p95 of the slice",
            y_text=duration,
            y_top=duration_ceiling,
        ),
        "amendment_trend": line_chart(
            "amendment_trend",
            "Amendment failure rate: failed or in exception / requested",
            labels,
            [Series("failure rate", [p.amendment_failure_rate for p in report.series])],
            y_label="failed share",
            y_text=percent,
            empty="No amendment requested in this range",
        ),
        "backlog_trend": line_chart(
            "backlog_trend",
            "Synchronisation backlog: events waiting at each slice's end",
            labels,
            [Series("events waiting", backlog)] if any(backlog) else [],
            y_label="events",
            y_top=count_ceiling,
            y_text=plain,
            empty="No work waited in this range",
        ),
    }


def _duration_groups(
    table: dict[tuple[str, str], Durations], stages: dict[str, str]
) -> list[BarGroup]:
    groups = []
    order = {stage: i for i, stage in enumerate(stages)}
    ranked = sorted(table.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], len(order))))
    for (entity, stage), d in ranked:
        if d.p50 is None or d.p95 is None:
            continue
        name = f"{entity} · {stages.get(stage, stage)}"
        groups.append(
            BarGroup(
                name,
                [
                    Bar("p50", d.p50, f"{duration(d.p50)} (n={d.count})"),
                    Bar("p95", d.p95, duration(d.p95)),
                ],
            )
        )
    return groups


def percentile_charts(report: KpiReport) -> dict[str, Markup]:
    """p50 and p95 per entity and stage over the whole range."""
    return {
        "activation_now": bar_chart(
            "activation_now",
            "Order activation time per entity: Closed Won -> stage",
            _duration_groups(report.activation, ACTIVATION_STAGE_NAMES),
            value_label="time from Closed Won",
        ),
        "invoice_lag_now": bar_chart(
            "invoice_lag_now",
            "Invoice generation lag per entity: finalised in billing -> stage",
            _duration_groups(report.invoice_lag, INVOICE_STAGE_NAMES),
            value_label="time from finalised in billing",
        ),
    }


def money_charts(report: KpiReport) -> dict[str, Markup]:
    """A chart per currency (amounts of different currencies never share a scale)."""
    by_currency: dict[str, list[BarGroup]] = defaultdict(list)
    for row in report.money:
        bars = [
            Bar(kind, float(amount), amount_text(amount, row.currency))
            for kind, amount in zip(
                MONEY_KINDS, (row.bookings, row.billings, row.collections), strict=True
            )
        ]
        by_currency[row.currency].append(BarGroup(row.entity, bars))
    return {
        f"money_{currency}": bar_chart(
            f"money_{currency}",
            f"Bookings, billings and collections per entity in {currency}",
            groups,
            value_label=f"amount ({currency})",
        )
        for currency, groups in sorted(by_currency.items())
    }


async def revenue(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    chosen = range_of(request)

    def read() -> tuple[Window, KpiReport]:
        w = window(chosen, console.runtime.clock.now())
        report = compute_kpis(
            console.runtime.engine, since=w.since, until=w.until, buckets=chosen.slices
        )
        return w, report

    w, report = await console.store(read)
    return page(
        request,
        "revenue.html",
        window=w,
        ranges=list(RANGES),
        report=report,
        trends=trend_charts(w, report),
        percentiles=percentile_charts(report),
        money=money_charts(report),
        backlog_now=sum(n for n, _ in report.backlog.values()),
    )
