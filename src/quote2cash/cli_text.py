"""Text from data on the console: rich reads ``[...]`` as markup, so data is escaped first and
``[billing]`` or ``[bold]`` in a reason, name or id is shown verbatim, never styled or eaten."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

__all__ = ["DataTable", "escape"]


class DataTable(Table):
    """A table whose text cells are data: each is escaped; styled cells are given as ``Text``."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(
            *(escape(cell) if isinstance(cell, str) else cell for cell in renderables), **kwargs
        )
