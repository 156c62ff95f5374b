"""PostgreSQL: ``column = ANY(%s)`` with one array parameter."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY

PART = 50_000


def member_of(column: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
    array = bindparam(None, values, type_=ARRAY(column.type))
    return column == any_(array)
