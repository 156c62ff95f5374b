"""The console on a real HTTP server (127.0.0.1, ephemeral port) over a real store holding a
deal the engine processed, and headless Chromium to drive it."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from conftest import missing_service
from integration.console.deal import Deal, populate
from integration.console.people import make_operator
from quote2cash.api.app import build_app
from quote2cash.console.links import ObjectLinks
from quote2cash.engine.runtime import Runtime

CHROMIUM = os.environ.get("Q2C_CHROMIUM", "/usr/bin/chromium")
PEOPLE = {
    "olivia": ["operator"],
    "fiona": ["finance_approver"],
    "victor": ["viewer"],
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SIGNIN_CSRF = re.compile(r'name="signin_csrf" value="([^"]+)"')


@dataclass
class ConsoleSite:
    url: str
    runtime: Runtime
    deal: Deal
    passwords: dict[str, str]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[ConsoleSite]:
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", sqlite_synchronous="NORMAL")
    deal = await populate(runtime)
    passwords = {name: make_operator(runtime, name, roles) for name, roles in PEOPLE.items()}
    app = build_app(
        runtime,
        console_links=ObjectLinks(
            crm_url="https://sf.example.test", billing_url="http://stripe.example.test"
        ),
    )
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    host, port = runner.addresses[0][:2]
    try:
        yield ConsoleSite(f"http://{host}:{port}", runtime, deal, passwords)
    finally:
        await runner.cleanup()
        runtime.close()


async def sign_in(session: aiohttp.ClientSession, site: ConsoleSite, name: str) -> str:
    """Sign ``name`` in with the form (cookies kept in ``session``); returns the CSRF token."""
    async with session.get(f"{site.url}/console/sign-in") as answer:
        token = SIGNIN_CSRF.search(await answer.text())
    assert token is not None
    async with session.post(
        f"{site.url}/console/sign-in",
        data={"name": name, "password": site.passwords[name], "signin_csrf": token.group(1)},
    ) as answer:
        assert answer.status == 200, await answer.text()
        page = await answer.text()
    found = CSRF.search(page)
    assert found is not None, page
    return found.group(1)


@pytest.fixture
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM
