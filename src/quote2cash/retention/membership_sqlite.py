"""SQLite: an expanded ``IN`` list, under the default limit of 32,766 variables a statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

PART = 5_000


def member_of(column: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
    return column.in_(values)
