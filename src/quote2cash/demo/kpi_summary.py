"""The four business KPIs the demo measured, as summary lines (from ``compute_kpis``)."""

from __future__ import annotations

from quote2cash.observability.kpis import Durations, KpiReport


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _stages(table: dict[tuple[str, str], Durations], stages: tuple[str, ...]) -> str:
    parts = []
    for entity, stage in sorted(table, key=lambda k: (k[0], stages.index(k[1]))):
        d = table[(entity, stage)]
        parts.append(f"{entity} {stage} p50 {_seconds(d.p50)} / p95 {_seconds(d.p95)} ({d.count})")
    return "; ".join(parts) or "none measured"


def kpi_lines(report: KpiReport) -> list[tuple[str, str]]:
    """(name, value) rows: activation and invoice lag per entity and stage, amendment failure
    rate, and the backlog left per system."""
    rate = report.amendment_failure_rate
    waiting = [f"{s} {n} (oldest {_seconds(age)})" for s, (n, age) in report.backlog.items() if n]
    return [
        ("KPI order activation", _stages(report.activation, ("billing", "erp"))),
        ("KPI invoice generation lag", _stages(report.invoice_lag, ("erp", "crm"))),
        (
            "KPI amendment failure rate",
            f"{'-' if rate is None else f'{rate:.0%}'} ({report.amendments_failed} of "
            f"{report.amendments_requested} requests failed)",
        ),
        ("KPI sync backlog", "; ".join(waiting) or "nothing waiting"),
    ]
