"""The time range a dashboard shows (``?range=1h|24h|7d``), cut into equal slices, ending at
the hub clock's now."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from aiohttp import web

from quote2cash.engine.control import ControlError


@dataclass(frozen=True)
class Range:
    name: str
    length: timedelta
    slices: int
    label_format: str  # strftime of a slice's start on the x axis


RANGES: Final = {
    r.name: r
    for r in (
        Range("1h", timedelta(hours=1), 12, "%H:%M"),
        Range("24h", timedelta(hours=24), 24, "%H:%M"),
        Range("7d", timedelta(days=7), 28, "%m-%d %H:%M"),
    )
}
DEFAULT: Final = "24h"


@dataclass(frozen=True)
class Window:
    range: Range
    since: datetime
    until: datetime

    def labels(self, starts: Iterable[datetime]) -> list[str]:
        return [s.strftime(self.range.label_format) for s in starts]


def range_of(request: web.Request) -> Range:
    """The requested range; anything else is refused with the names that are allowed."""
    name = request.query.get("range", DEFAULT)
    found = RANGES.get(name)
    if found is None:
        raise ControlError(
            f"query parameter 'range' is {name[:20]!r}; expected one of {list(RANGES)}"
        )
    return found


def window(chosen: Range, now: datetime) -> Window:
    return Window(chosen, now - chosen.length, now)
