"""The dashboards' SVG charts: well-formed XML, points and bars where the figures put them,
an explicit empty state, and every text from data escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from quote2cash.console.charts import (
    NO_DATA,
    Bar,
    BarGroup,
    Series,
    bar_chart,
    count_ceiling,
    duration,
    duration_ceiling,
    line_chart,
    nice_ceiling,
    percent,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    assert "style" not in markup  # no inline style: the console's CSP forbids it
    return root


def points(root: ET.Element, series: str | None = None) -> list[ET.Element]:
    found = root.iter(f"{SVG}circle")
    return [c for c in found if series is None or c.get("data-series") == series]


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_a_line_chart_has_a_point_per_figure_scaled_to_the_axis() -> None:
    values = [0.0, 5.0, None, 10.0, 2.5]
    root = parse(
        line_chart("t", "Throughput", ["a", "b", "c", "d", "e"], [Series("handled", values)],
                   y_label="events")
    )  # fmt: skip
    circles = points(root, "handled")
    assert len(circles) == 4  # None is a gap, not a point
    ys = [float(c.get("cy", "nan")) for c in circles]
    xs = [float(c.get("cx", "nan")) for c in circles]
    bottom, top = ys[0], ys[2]  # 0 sits on the axis, 10 (the axis top) at the plot's top
    assert bottom > top
    assert ys[1] == pytest.approx((bottom + top) / 2, abs=0.02)
    assert ys[3] == pytest.approx(bottom - (bottom - top) / 4, abs=0.02)
    step = xs[1] - xs[0]
    assert xs[2] - xs[1] == pytest.approx(2 * step, abs=0.02)  # slice d is two slices after b
    assert xs[3] - xs[2] == pytest.approx(step, abs=0.02)
    lines = list(root.iter(f"{SVG}polyline"))
    assert [len(p.get("points", "").split()) for p in lines] == [2, 2]  # broken at the gap
    assert "events" in texts(root) and "time (UTC)" in texts(root)
    assert "handled" in texts(root)  # the legend


def test_two_series_keep_their_own_points_and_colours() -> None:
    root = parse(
        line_chart(
            "e",
            "Errors",
            ["1", "2", "3"],
            [Series("failed", [1.0, 2.0, 0.0]), Series("dead", [0.0, 1.0, None])],
            y_label="events",
        )
    )
    failed, dead = points(root, "failed"), points(root, "dead")
    assert len(failed) == 3 and len(dead) == 2
    assert {c.get("class") for c in failed} == {"pt s0"}
    assert {c.get("class") for c in dead} == {"pt s1"}


def test_a_chart_without_figures_says_so() -> None:
    for markup in (
        line_chart("x", "Activation", ["a", "b"], [Series("p95", [None, None])], y_label="s"),
        line_chart("x", "Activation", [], [], y_label="s"),
        bar_chart("y", "Money", [], value_label="amount"),
        bar_chart("y", "Money", [BarGroup("US", [])], value_label="amount"),
    ):
        root = parse(markup)
        assert NO_DATA in texts(root)
        assert points(root) == [] and list(root.iter(f"{SVG}rect")) == []
        assert "chart-empty" in root.get("class", "")
    root = parse(line_chart("x", "T", ["a"], [], y_label="s", empty="No failure in this range"))
    assert "No failure in this range" in texts(root)


def test_durations_tick_in_round_units() -> None:
    root = parse(
        line_chart("d", "Activation", ["a", "b"], [Series("p95", [600.0, 5000.0])],
                   y_label="p95", y_text=duration, y_top=duration_ceiling)
    )  # fmt: skip
    ticks = [t for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ["".join(t.itertext()) for t in ticks[:5]] == ["0 s", "30 min", "1 h", "1.5 h", "2 h"]


def test_bars_are_proportional_and_show_their_text() -> None:
    groups = [
        BarGroup("US", [Bar("bookings", 200.0, "200.00 USD"), Bar("billings", 50.0, "50 USD")]),
        BarGroup("DE", [Bar("bookings", 100.0, "100.00 USD"), Bar("collections", 0.0, "0")]),
    ]
    root = parse(bar_chart("m", "Money", groups, value_label="amount (USD)"))
    bars = [r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", "").split()]
    assert len(bars) == 4
    widths = [float(r.get("width", "nan")) for r in bars]
    assert widths[0] == pytest.approx(4 * widths[1], abs=0.02)
    assert widths[0] == pytest.approx(2 * widths[2], abs=0.02)
    assert widths[3] == 0
    colours = [r.get("class") for r in bars]
    assert colours == ["bar s0", "bar s1", "bar s0", "bar s2"]  # a colour per series name
    assert {"200.00 USD", "50 USD", "US", "DE", "amount (USD)", "collections"} <= set(texts(root))
    groups_seen = [g.get("data-group") for g in root.iter(f"{SVG}g") if g.get("data-group")]
    assert groups_seen == ["US", "DE"]


def test_every_text_from_data_is_escaped() -> None:
    evil = "<script>alert(\"x\")</script> & 'q'"
    line = line_chart("a", evil, [evil, "b"], [Series(evil, [1.0, 2.0])], y_label=evil,
                      x_label=evil)  # fmt: skip
    bars = bar_chart("b", evil, [BarGroup(evil, [Bar(evil, 1.0, evil)])], value_label=evil)
    empty = bar_chart("c", evil, [], value_label=evil, empty=evil)
    for markup in (line, bars, empty):
        assert "<script>" not in markup
        root = parse(markup)
        assert evil in texts(root)
        assert not list(root.iter(f"{SVG}script"))
    assert parse(line).find(f"{SVG}circle").get("data-series") == evil  # type: ignore[union-attr]


def test_axis_tops_and_value_texts() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 240, 2600)] == [
        1, 0.5, 1, 10, 20, 250, 5000,
    ]  # fmt: skip
    assert [count_ceiling(v) for v in (0, 1, 4, 7, 10, 13, 25, 150)] == [
        4,
        4,
        4,
        8,
        12,
        20,
        40,
        200,
    ]
    assert [duration(s) for s in (0, 0.0123, 4.5, 90, 5400, 172800)] == [
        "0 s", "12.3 ms", "4.5 s", "1.5 min", "1.5 h", "2 d",
    ]  # fmt: skip
    assert [duration_ceiling(s) for s in (0.3, 45, 846, 5000, 3 * 86400)] == [
        0.5, 50, 20 * 60, 2 * 3600, 5 * 86400,
    ]  # fmt: skip
    assert percent(1 / 3) == "33.3 %" and percent(0.25) == "25 %"
