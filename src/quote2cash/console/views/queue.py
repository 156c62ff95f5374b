"""The exception queue by recoverability, apart from the technical alerts."""

from __future__ import annotations

from aiohttp import web

from quote2cash.console.context import console_of
from quote2cash.console.render import page
from quote2cash.console.session import SIGNED_IN
from quote2cash.console.views.exceptions_read import RECOVERABILITY, read_queue


async def exceptions(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    queue = await console.store(lambda: read_queue(console.runtime))
    return page(
        request,
        "exceptions.html",
        queue=queue,
        titles=RECOVERABILITY,
        may_act=request[SIGNED_IN].operator.holds("operator"),
    )
