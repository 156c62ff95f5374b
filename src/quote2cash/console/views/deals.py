"""Home, search by any business key, and one deal's trace across the systems."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from quote2cash.console.context import console_of
from quote2cash.console.decide import may_decide
from quote2cash.console.render import page, redirect
from quote2cash.console.session import SIGNED_IN
from quote2cash.console.views.search_read import find_deals
from quote2cash.console.views.trace_read import LANE_TITLES, LANES, read_trace
from quote2cash.engine.replay import get_request


async def home(request: web.Request) -> web.StreamResponse:
    return page(request, "home.html", key="", hits=None)


async def search(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    key = request.query.get("q", "").strip()
    hits = await console.store(lambda: find_deals(console.runtime, key)) if key else []
    if len(hits) == 1:
        return redirect(f"/console/trace/{quote(hits[0].correlation_id, safe='')}")
    return page(request, "home.html", key=key, hits=hits, status=200 if hits or not key else 404)


async def trace(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    cid = request.match_info["correlation_id"]
    found = await console.store(lambda: read_trace(console.runtime, cid, console.links))
    if found is None:
        return page(
            request,
            "error.html",
            status=404,
            title="No such deal",
            message=f"No event carries the correlation id {cid!r}.",
        )
    operator = request[SIGNED_IN].operator
    requests = await console.store(
        lambda: [get_request(console.runtime, rid) for rid in found.replay_ids]
    )
    return page(
        request,
        "trace.html",
        trace=found,
        lanes=LANES,
        lane_titles=LANE_TITLES,
        requests=requests,
        deciding={r.id for r in requests if may_decide(operator, r)},
        may_request=operator.holds("operator"),
    )
