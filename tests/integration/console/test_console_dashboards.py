"""The two dashboards over real HTTP: signed-in only, open to a viewer, charts as inline SVG
under the console's CSP, a range selector, and an empty store shown as "no data", not an error."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from integration.console.people import make_admin, make_operator
from integration.console.site import ConsoleSite, served_runtime, sign_in
from quote2cash.console.charts import NO_DATA
from quote2cash.console.views.dashboard_window import RANGES
from quote2cash.engine.runtime import Runtime

PAGES = ("/console/operations", "/console/revenue")
SVG = re.compile(r"<svg .*?</svg>", re.S)


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def charts(page: str) -> dict[str, ET.Element]:
    """Every chart of the page by its ``data-chart`` name, each parsed as XML."""
    found = {}
    for markup in SVG.findall(page):
        root = ET.fromstring(markup)
        found[root.get("data-chart", "")] = root
    return found


def point_count(chart: ET.Element) -> int:
    return len(list(chart.iter("{http://www.w3.org/2000/svg}circle")))


async def test_the_dashboards_need_a_session(site: ConsoleSite) -> None:
    async with _session() as http:
        for path in PAGES:
            async with http.get(f"{site.url}{path}?range=1h", allow_redirects=False) as answer:
                assert answer.status == 303
                assert answer.headers["Location"].startswith("/console/sign-in?next=")
                assert "svg" not in await answer.text()


async def test_a_viewer_sees_both_dashboards_as_charts(site: ConsoleSite) -> None:
    async with _session() as http:
        await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/operations?range=7d") as answer:
            assert answer.status == 200
            csp = answer.headers["Content-Security-Policy"]
            ops = await answer.text()
        async with http.get(f"{site.url}/console/revenue") as answer:
            assert answer.status == 200
            revenue = await answer.text()
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    for page in (ops, revenue):
        assert 'href="/console/operations"' in page and 'href="/console/revenue"' in page
        assert "<script" not in page and "style=" not in page  # nothing the CSP would block
    found = charts(ops)
    assert {"throughput", "errors", "backlog", "backlog_now", "call_latency", "call_errors"} <= set(
        found
    )
    # The deal was handled this week: a throughput point for each slice, zeros included.
    assert point_count(found["throughput"]) == RANGES["7d"].slices
    assert 'aria-current="page">last 7d' in ops
    assert set(charts(revenue)) >= {
        "activation_trend",
        "invoice_lag_trend",
        "amendment_trend",
        "backlog_trend",
        "activation_now",
        "invoice_lag_now",
    }
    assert 'aria-current="page">last 24h' in revenue


async def test_an_unknown_range_is_refused_with_the_allowed_ones(site: ConsoleSite) -> None:
    async with _session() as http:
        await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/revenue?range=<b>1y</b>") as answer:
            assert answer.status == 400
            text = await answer.text()
    assert "<b>1y" not in text
    assert "expected one of ['1h', '24h', '7d']" in html.unescape(text)


@pytest.fixture
async def empty_site(tmp_path: Path) -> AsyncIterator[ConsoleSite]:
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'empty.sqlite'}", sqlite_synchronous="NORMAL")
    password = make_operator(runtime, make_admin(runtime), "victor", ["viewer"])
    try:
        async with served_runtime(runtime) as url:
            yield ConsoleSite(url, runtime, None, {"victor": password})  # type: ignore[arg-type]
    finally:
        runtime.close()


async def test_an_empty_store_shows_no_data_not_an_error(empty_site: ConsoleSite) -> None:
    async with _session() as http:
        await sign_in(http, empty_site, "victor")
        pages = {}
        for path in PAGES:
            for name in RANGES:
                async with http.get(f"{empty_site.url}{path}?range={name}") as answer:
                    assert answer.status == 200, path
                    pages[path, name] = await answer.text()
    for page in pages.values():
        drawn = charts(page)
        for per_process in ("call_latency", "call_errors"):  # this test process made calls
            drawn.pop(per_process, None)
        assert drawn and all("chart-empty" in c.get("class", "") for c in drawn.values())
        assert all(point_count(c) == 0 for c in drawn.values())
    revenue = pages["/console/revenue", "24h"]
    assert NO_DATA in revenue
    assert "No data in this range: nothing was booked" in revenue
