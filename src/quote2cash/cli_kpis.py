"""``q2c kpis``: the four business KPIs and the money per legal entity, from the hub's store."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from quote2cash.cli_text import DataTable, FormatOption, OutputFormat, print_table

if TYPE_CHECKING:
    from rich.console import Console

    from quote2cash.observability.kpis import Durations, KpiReport

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
SinceOption = Annotated[
    str,
    typer.Option("--since", help="A span back from now (24h, 7d, 90m) or an ISO 8601 time"),
]
_SPAN = re.compile(r"(\d{1,6})([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def register(app: typer.Typer) -> None:
    app.command("kpis")(kpis)


def parse_since(value: str, now: datetime) -> datetime:
    """``24h`` -> 24 hours before ``now``; an ISO time must name its offset (or ``Z``)."""
    span = _SPAN.fullmatch(value.strip())
    if span is not None:
        return now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(
            f"--since {value!r} is neither a span (24h, 7d, 90m, 3600s) nor an ISO 8601 time "
            "with its offset (2026-12-06T09:00:00Z)"
        )
    if when >= now:
        raise ValueError(f"--since {value!r} is not in the past")
    return when.astimezone(UTC)


def kpis(
    since: SinceOption = "24h", db: DbOption = None, output: FormatOption = OutputFormat.table
) -> None:
    """Order activation time, invoice generation lag, amendment failure rate and backlog per
    system, plus bookings / billings / collections per legal entity and currency."""
    from quote2cash.cli import console, fail, open_runtime
    from quote2cash.observability.kpis import compute_kpis

    now = datetime.now(UTC)
    try:
        start = parse_since(since, now)
    except ValueError as exc:
        fail(str(exc))
    runtime = open_runtime(db)
    report = compute_kpis(runtime.engine, since=start, until=now)
    if output is OutputFormat.json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    show_report(console, report)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _durations(title: str, table: dict[tuple[str, str], Durations]) -> DataTable:
    out = DataTable("entity", "stage", "count", "p50", "p95", "max", title=title)
    for (entity, stage), d in sorted(table.items()):
        out.add_row(entity, stage, str(d.count), _seconds(d.p50), _seconds(d.p95), _seconds(d.max))
    return out


def show_report(console: Console, report: KpiReport) -> None:
    """The report as tables for people (``--format json`` is ``KpiReport.to_json()``)."""
    console.print(
        f"KPIs of milestones from {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} "
        "UTC",
        highlight=False,
    )
    print_table(
        console,
        _durations("order activation (Closed Won -> active in billing / booked in ERP)",
                   report.activation),
    )  # fmt: skip
    print_table(
        console,
        _durations("invoice generation lag (finalised -> posted in ERP / visible in CRM)",
                   report.invoice_lag),
    )  # fmt: skip
    rate = report.amendment_failure_rate
    console.print(
        f"amendments: {report.amendments_requested} requested, {report.amendments_failed} "
        f"failed, failure rate {'-' if rate is None else f'{rate:.1%}'}",
        highlight=False,
    )
    backlog = DataTable("system", "events waiting", "oldest", title="synchronisation backlog")
    for system, (events, age) in sorted(report.backlog.items()):
        backlog.add_row(system, str(events), _seconds(age))
    print_table(console, backlog)
    money = DataTable(
        "entity", "currency", "bookings", "billings", "collections", title="money moved"
    )
    for row in report.money:
        money.add_row(
            row.entity, row.currency, str(row.bookings), str(row.billings), str(row.collections)
        )
    print_table(console, money)
