"""Connection refused and timeouts end as TransientError after one request: the engine retries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from quote2cash.connectors.stripe import StripeBilling
from quote2cash.engine.errors import TransientError

from .conftest import Sandbox


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def slow_server() -> AsyncIterator[tuple[str, list[int]]]:
    hits: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(1)
        await asyncio.sleep(5)
        return web.json_response({"object": "list", "data": [], "has_more": False})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


async def test_connection_refused_is_transient_at_once_and_check_says_unreachable() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with StripeBilling.for_sandbox(url) as billing:
        with pytest.raises(TransientError, match="could not reach Stripe") as info:
            await billing.get_subscription("sub_1")
        assert info.value.system == "billing"
        check = await billing.check()
        assert (check.reachable, check.authenticated) == (False, False)


async def test_a_timeout_is_transient_after_one_request(
    slow_server: tuple[str, list[int]],
) -> None:
    url, hits = slow_server
    async with StripeBilling.for_sandbox(url, request_timeout=1.0) as billing:
        with pytest.raises(TransientError, match="timeout"):
            await billing.list_prices()
    # On a loaded machine the server may read the request only after the client gave up:
    # wait for it to arrive, then give a retry (which the SDK would make at once) time to show.
    for _ in range(50):
        if hits:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert len(hits) == 1, "the engine retries, not the connector nor the SDK"


async def test_a_429_is_throttled_with_retry_after_and_names_stripes_reason(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    sandbox.emulator.config.fail_next_429 = 1
    sandbox.emulator.config.retry_after_seconds = 7
    with pytest.raises(TransientError) as info:
        await billing.list_prices()
    assert info.value.throttled is True
    assert info.value.retry_after == 7
    assert "(global-rate)" in str(info.value)
