"""A registry for ``q2c worker --handlers support.gated_calls:registry``: each event makes one
gated ERP call to the HTTP endpoint named by ``Q2C_TEST_ERP_URL`` (which records when it
started)."""

from __future__ import annotations

import os

import aiohttp

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.registry import Registry

CALL = "test.erp_call.requested"
registry = Registry()


@registry.on(CALL)
async def call_erp(ctx: HandlerContext, event: Event) -> None:
    url = f"{os.environ['Q2C_TEST_ERP_URL']}/{event.id}"

    async def post(_key: str) -> int:
        async with aiohttp.ClientSession() as http, http.post(url) as answered:
            return answered.status

    await ctx.step("erp.call", post)
