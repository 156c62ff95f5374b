"""A report as a rich table, JSON or CSV; text from the systems is escaped before rich sees it."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quote2cash.cli_text import print_table as print_wide
from quote2cash.reconcile.model import Drift, Report

FORMATS = ("table", "json", "csv")
CSV_COLUMNS = ("id", "kind", "object", "key", "billing", "erp", "crm", "detail", "repair")


def _ids(drift: Drift, system: str) -> str:
    return " ".join(drift.ids.get(system, ()))


def as_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2)


def as_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in report.drifts:
        writer.writerow(
            [
                d.id,
                d.kind.value,
                d.object,
                d.key,
                _ids(d, "billing"),
                _ids(d, "erp"),
                _ids(d, "crm"),
                d.detail,
                d.repair.describe(),
            ]
        )
    return out.getvalue()


def print_table(report: Report, console: Console) -> None:
    read = "; ".join(
        f"{system}: " + ", ".join(f"{n} {kind}s" for kind, n in sorted(kinds.items()))
        for system, kinds in sorted(report.counts.items())
    )
    console.print(escape(f"read {read}"), highlight=False)
    if report.clean:
        console.print("[green bold]no drift[/]: CRM, billing and ERP agree")
        return
    table = Table("id", "kind", "object", "billing", "erp", "crm", "detail", "repair")
    for d in report.drifts:
        table.add_row(
            d.id,
            d.kind.value,
            escape(f"{d.object} {d.key}"),
            escape(_ids(d, "billing")),
            escape(_ids(d, "erp")),
            escape(_ids(d, "crm")),
            escape(d.detail),
            escape(d.repair.describe()),
        )
    print_wide(console, table)
    console.print(f"[red bold]{len(report.drifts)} drift(s)[/]")
