"""Text from data on the console: rich reads ``[...]`` as markup, so data is escaped first and
``[billing]`` or ``[bold]`` in a reason, name or id is shown verbatim, never styled or eaten.

Every command that lists records prints them through ``show_records``: a table for people, never
cut at 80 columns when the output is not a terminal, or ``--format json`` for machines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["FORMATS", "DataTable", "FormatOption", "escape", "print_table", "show_records"]

FORMATS = ("table", "json")


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="table (for people) or json (for machines)"),
]


class DataTable(Table):
    """A table whose text cells are data: each is escaped; styled cells are given as ``Text``."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(
            *(escape(cell) if isinstance(cell, str) else cell for cell in renderables), **kwargs
        )


def print_table(console: Console, table: Table) -> None:
    """Print ``table``; to a pipe or file at its natural width, so no cell is cut or wrapped."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(100_000), table).maximum
    saved = console.width
    console.width = max(saved, natural)
    try:
        console.print(table)
    finally:
        console.width = saved


def as_json_value(value: Any) -> Any:
    """Times as ISO 8601, amounts as strings (exact), enums by value; the rest as JSON has it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Text):
        return value.plain
    if isinstance(value, Mapping):
        return {str(k): as_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json_value(v) for v in value]
    return value


def _cell(value: Any) -> str | Text:
    if value is None:
        return ""
    if isinstance(value, Text):
        return value
    if isinstance(value, bool):
        return Text("yes", style="green") if value else Text("no", style="red")
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, list | tuple):
        return "; ".join(str(_cell(v)) for v in value)
    return str(value)


def show_records(
    console: Console,
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    output: OutputFormat | str,
    *,
    display: Mapping[str, Any] | None = None,
) -> None:
    """Print ``records`` as JSON (a list of objects with ``columns`` as keys) or as a table.

    ``display`` may give, per column, a function that turns the record into the table's cell
    (JSON always carries the plain value).
    """
    if OutputFormat(output) is OutputFormat.json:
        rows = [{c: as_json_value(r.get(c)) for c in columns} for r in records]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    shown = display or {}
    table = DataTable(*(c.replace("_", " ") for c in columns))
    for record in records:
        table.add_row(*(shown[c](record) if c in shown else _cell(record.get(c)) for c in columns))
    print_table(console, table)
