"""Secrets never reach a log at any level: the Stripe SDK's DEBUG log of a new webhook endpoint
(its signing secret in the response body) and a token sent as ``?token=`` in the access log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from quote2cash.api.cli import _hook_sandbox
from quote2cash.api.serve import ServeOptions, serve
from quote2cash.connectors.registry import Systems
from quote2cash.engine.runtime import Runtime
from quote2cash.observability.redact import install_redaction
from quote2cash.sandbox.stripe import StripeEmulator

STRIPE_KEY = "sk_test_q2c_redaction"


@pytest.fixture
def stripe_url() -> Iterator[str]:
    base_url, stop = StripeEmulator().start_in_thread()
    try:
        yield base_url
    finally:
        stop()


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records) + caplog.text


async def test_stripe_debug_log_never_holds_the_new_signing_secret(
    stripe_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()
    caplog.set_level(logging.DEBUG)
    state = {"stripe": {"api_key": STRIPE_KEY, "base_url": stripe_url}}
    verifier = await _hook_sandbox(state, "http://127.0.0.1:9/hub")
    assert verifier is not None
    import stripe

    client = stripe.StripeClient(api_key=STRIPE_KEY, base_addresses={"api": stripe_url})
    endpoints = client.v1.webhook_endpoints.list(params={"limit": 10}).data
    assert endpoints, "the hub registered its webhook endpoint"
    created = client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/other", "enabled_events": ["*"]}
    )
    secret = str(created.secret)
    assert secret.startswith("whsec_")
    text = _logged(caplog)
    assert "API response body" in text, "the SDK logged its response bodies at DEBUG"
    assert '"secret": "***"' in text
    assert secret not in text
    assert STRIPE_KEY not in text


async def test_access_log_never_writes_a_token_from_the_query_or_headers(
    tmp_path: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    runtime = Runtime.open(f"sqlite:///{tmp_path}/q2c.sqlite", initialise=True)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_ready(url: str, app: web.Application) -> None:
        ready.set_result(url)

    token = "q2c_QueryTokenValue123456"
    task = asyncio.create_task(
        serve(
            runtime,
            Systems(),
            stop,
            ServeOptions(port=0, workers=False, poll_seconds=0),
            stripe_verifier=None,
            callout_secret=None,
            on_ready=on_ready,
        )
    )
    try:
        base = await asyncio.wait_for(ready, 10)
        async with aiohttp.ClientSession() as http:
            for path in (f"/v1/events?token={token}", f"/health?limit=1&token={token}"):
                async with http.get(
                    f"{base}{path}", headers={"Referer": f"{base}/console?token={token}"}
                ) as response:
                    await response.read()
    finally:
        stop.set()
        await task
        runtime.close()
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 2, "both requests were written to the access log"
    assert all("token=***" in r.getMessage() for r in access)
    assert token not in _logged(caplog)
