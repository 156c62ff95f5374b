"""The console on a real HTTP server (127.0.0.1, ephemeral port) over a real store holding a
deal the engine processed; helpers to sign in over HTTP."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from integration.console.deal import Deal, populate
from integration.console.people import make_admin, make_operator
from quote2cash.api.app import HubStatus, build_app
from quote2cash.console.links import ObjectLinks
from quote2cash.engine.runtime import Runtime

PEOPLE = {
    "olivia": ["operator"],
    "oscar": ["operator"],
    "fiona": ["finance_approver"],
    "victor": ["viewer"],
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SIGNIN_CSRF = re.compile(r'name="signin_csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Prepared:
    path: Path
    deal: Deal
    passwords: dict[str, str]


@dataclass
class ConsoleSite:
    url: str
    runtime: Runtime
    deal: Deal
    passwords: dict[str, str]


def prepare(folder: Path) -> Prepared:
    """The deal and the operators, made once (password hashing is slow on purpose)."""
    path = folder / "hub.sqlite"
    runtime = Runtime.open(f"sqlite:///{path}")
    try:
        deal = asyncio.run(populate(runtime))
        admin = make_admin(runtime)
        passwords = {
            name: make_operator(runtime, admin, name, roles) for name, roles in PEOPLE.items()
        }
    finally:
        runtime.close()
    return Prepared(path, deal, passwords)


@asynccontextmanager
async def serving(
    prepared: Prepared,
    folder: Path,
    *,
    status: HubStatus | None = None,
    extra: Callable[[web.Application], None] | None = None,
) -> AsyncIterator[ConsoleSite]:
    """A copy of the prepared store served with the console (``extra`` adds routes)."""
    path = folder / "hub.sqlite"
    shutil.copyfile(prepared.path, path)
    runtime = Runtime.open(f"sqlite:///{path}", sqlite_synchronous="NORMAL", initialise=False)
    try:
        async with served_runtime(runtime, status=status, extra=extra) as url:
            yield ConsoleSite(url, runtime, prepared.deal, prepared.passwords)
    finally:
        runtime.close()


@asynccontextmanager
async def served_runtime(
    runtime: Runtime,
    *,
    status: HubStatus | None = None,
    extra: Callable[[web.Application], None] | None = None,
) -> AsyncIterator[str]:
    """The hub's app with the console for ``runtime`` on 127.0.0.1; yields its base URL."""
    app = build_app(
        runtime,
        status=status,
        console_links=ObjectLinks(
            crm_url="https://sf.example.test", billing_url="http://stripe.example.test"
        ),
    )
    if extra is not None:
        extra(app)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


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
