"""Server-rendered SVG charts for the dashboards: lines over time slices and horizontal grouped
bars. Each chart is one well-formed ``<svg>`` element whose every text from data is escaped and
which styles itself by class only (no inline style), so it renders under the console's CSP."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

PALETTE: Final = 6
"""Series colours are the classes ``s0``..``s5`` of console.css, reused in turn."""
NO_DATA: Final = "No data in this range"
WIDTH: Final = 640
MAX_X_LABELS: Final = 8

Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One line: a figure per slice, ``None`` where the slice has no figure (a gap)."""

    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Bar:
    """One bar: its length comes from ``value``; ``text`` is what it shows (e.g. an amount)."""

    series: str
    value: float
    text: str


@dataclass(frozen=True)
class BarGroup:
    name: str
    bars: Sequence[Bar]


def plain(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.3g}"


def percent(value: float) -> str:
    return f"{100 * value:.0f} %" if value * 100 == int(value * 100) else f"{100 * value:.1f} %"


UNITS: Final = (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0))


def duration(seconds: float) -> str:
    """Seconds in the unit a reader expects: 12 ms, 45 s, 12.5 min, 3.2 h, 2.1 d."""
    for unit, size in UNITS:
        if abs(seconds) >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds * 1000:.3g} ms" if seconds else "0 s"


def count_ceiling(value: float) -> float:
    """An axis top for counts whose quarter ticks are whole numbers: 4, 8, 12, 20, 40..."""
    if not math.isfinite(value):
        return 4.0
    power = 1.0
    while True:
        for step in (4.0, 8.0, 12.0, 20.0):
            if step * power >= value:
                return step * power
        power *= 10


def duration_ceiling(seconds: float) -> float:
    """A nice axis top in the unit of ``seconds`` (20 min, 2 h), so the ticks read evenly."""
    for _, size in UNITS[:-1]:
        if seconds >= size:
            return nice_ceiling(seconds / size) * size
    return nice_ceiling(seconds)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (1 for <= 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _svg(chart_id: str, title: str, height: float, body: list[str], extra: str = "") -> Markup:
    label = escape(f"chart-{chart_id}-title")
    return Markup(  # noqa: S704 - every text from data in it went through escape()
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart{extra}" '
        f'data-chart="{escape(chart_id)}" viewBox="0 0 {WIDTH} {_n(height)}" '
        f'width="{WIDTH}" height="{_n(height)}" role="img" aria-labelledby="{label}">'
        f'<title id="{label}">{escape(title)}</title>'
        f'<text class="chart-title" x="8" y="16">{escape(title)}</text>' + "".join(body) + "</svg>"
    )


def empty_chart(chart_id: str, title: str, message: str = NO_DATA) -> Markup:
    """The chart's place when it has nothing to draw: its title and ``message``."""
    body = [
        f'<text class="no-data" x="{WIDTH / 2}" y="56" text-anchor="middle">'
        f"{escape(message)}</text>"
    ]
    return _svg(chart_id, title, 80, body, " chart-empty")


def _legend(names: Sequence[str], y: float) -> list[str]:
    out, x = ['<g class="legend">'], 8.0
    for i, name in enumerate(names):
        out.append(
            f'<rect class="swatch s{i % PALETTE}" x="{_n(x)}" y="{_n(y - 9)}" width="10" '
            f'height="10"/><text x="{_n(x + 14)}" y="{_n(y)}">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    out.append("</g>")
    return out


def line_chart(
    chart_id: str,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    x_label: str = "time (UTC)",
    y_text: Format = plain,
    y_top: Callable[[float], float] | None = None,
    empty: str = NO_DATA,
) -> Markup:
    """A line per series over the slices named by ``x_labels``; a point per figure, with its
    value as a tooltip; gaps where a slice has none. No figure at all draws ``empty``."""
    n = len(x_labels)
    figures = [v for s in series for v in s.values[:n] if v is not None]
    if n == 0 or not figures:
        return empty_chart(chart_id, title, empty)
    left, right, top, bottom, height = 76.0, 16.0, 48.0, 44.0, 240.0
    pw, ph = WIDTH - left - right, height - top - bottom
    top_value = (y_top or nice_ceiling)(max(figures))

    def x(i: int) -> float:
        return left + (i + 0.5) * pw / n

    def y(v: float) -> float:
        return top + ph - max(0.0, v) / top_value * ph

    body = _legend([s.name for s in series], 34)
    body.append('<g class="axes">')
    for k in range(5):
        tick = top_value * k / 4
        body.append(
            f'<line class="grid" x1="{_n(left)}" x2="{_n(left + pw)}" y1="{_n(y(tick))}" '
            f'y2="{_n(y(tick))}"/><text class="tick" x="{_n(left - 6)}" y="{_n(y(tick) + 4)}" '
            f'text-anchor="end">{escape(y_text(tick))}</text>'
        )
    every = max(1, math.ceil(n / MAX_X_LABELS))
    for i in range(0, n, every):
        body.append(
            f'<text class="tick" x="{_n(x(i))}" y="{_n(top + ph + 16)}" '
            f'text-anchor="middle">{escape(x_labels[i])}</text>'
        )
    body.append(
        f'<text class="axis-title" x="{_n(left + pw / 2)}" y="{_n(height - 6)}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text class="axis-title" transform="rotate(-90)" x="{_n(-(top + ph / 2))}" y="14" '
        f'text-anchor="middle">{escape(y_label)}</text></g>'
    )
    for k, s in enumerate(series):
        colour = f"s{k % PALETTE}"
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values[:n]):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{_n(x(i))},{_n(y(v))}")
        for run in runs:
            if len(run) > 1:
                body.append(f'<polyline class="line {colour}" points="{" ".join(run)}"/>')
        for i, v in enumerate(s.values[:n]):
            if v is not None:
                body.append(
                    f'<circle class="pt {colour}" data-series="{escape(s.name)}" '
                    f'cx="{_n(x(i))}" cy="{_n(y(v))}" r="3"><title>'
                    f"{escape(s.name)} {escape(x_labels[i])}: {escape(y_text(v))}</title></circle>"
                )
    return _svg(chart_id, title, height, body)


def bar_chart(
    chart_id: str,
    title: str,
    groups: Sequence[BarGroup],
    *,
    value_label: str,
    empty: str = NO_DATA,
) -> Markup:
    """Horizontal bars grouped by ``groups`` (a colour per series name, in order of first
    appearance); each bar's length is proportional to its value, its text written after it."""
    if not any(g.bars for g in groups):
        return empty_chart(chart_id, title, empty)
    names: list[str] = []
    for g in groups:
        names.extend(b.series for b in g.bars if b.series not in names)
    longest = max(len(g.name) for g in groups)
    left = min(280.0, 24.0 + 6.5 * longest)
    right, top, bar, gap, group_gap = 170.0, 48.0, 14.0, 3.0, 12.0
    pw = WIDTH - left - right
    widest = max((b.value for g in groups for b in g.bars), default=0.0)
    scale = pw / widest if widest > 0 else 0.0
    body = _legend(names, 34)
    yy = top
    for g in groups:
        size = len(g.bars) * (bar + gap) - gap
        body.append(
            f'<g class="group" data-group="{escape(g.name)}"><text class="group-name" '
            f'x="{_n(left - 8)}" y="{_n(yy + size / 2 + 4)}" text-anchor="end">'
            f"{escape(g.name)}</text>"
        )
        for b in g.bars:
            length = max(0.0, b.value) * scale
            colour = f"s{names.index(b.series) % PALETTE}"
            body.append(
                f'<rect class="bar {colour}" data-series="{escape(b.series)}" x="{_n(left)}" '
                f'y="{_n(yy)}" width="{_n(length)}" height="{_n(bar)}"><title>{escape(g.name)} '
                f"{escape(b.series)}: {escape(b.text)}</title></rect>"
                f'<text class="value" x="{_n(left + length + 4)}" y="{_n(yy + bar - 3)}">'
                f"{escape(b.text)}</text>"
            )
            yy += bar + gap
        body.append("</g>")
        yy += group_gap - gap
    height = yy + 28
    body.append(
        f'<line class="axis" x1="{_n(left)}" x2="{_n(left)}" y1="{_n(top - 4)}" '
        f'y2="{_n(yy - group_gap + 4)}"/><text class="axis-title" x="{_n(left + pw / 2)}" '
        f'y="{_n(height - 8)}" text-anchor="middle">{escape(value_label)}</text>'
    )
    return _svg(chart_id, title, height, body)
