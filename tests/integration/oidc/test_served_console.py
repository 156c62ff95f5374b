"""The console as `q2c serve` builds it (``build_app`` with an OpenID client) signs an operator in
through the sandbox provider: the button shows, the callback opens a console session, and the
pages then open with it."""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from quote2cash.api.app import build_app
from quote2cash.console.links import ObjectLinks
from quote2cash.console.oidc_routes import CALLBACK_PATH
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.identity.accounts import add_operator
from quote2cash.identity.oidc import OidcClient, OidcSettings
from quote2cash.sandbox.oidc.directory import load_directory, save_directory
from quote2cash.sandbox.oidc.provider import start_provider

from .conftest import Templates, log_in


@pytest.fixture
async def served(tmp_path: Path, templates: Templates) -> AsyncIterator[tuple[str, str]]:
    """A served hub (API + console + OIDC) and the password of the sandbox's alice."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    folder = tmp_path / "oidc"
    shutil.copytree(templates.provider_folder, folder)
    directory = load_directory(folder)
    client_id = templates.credentials["client_id"]
    registered = replace(directory.clients[client_id], redirect_uris=(base_url + CALLBACK_PATH,))
    save_directory(folder, replace(directory, clients={client_id: registered}))
    provider = await start_provider(folder)
    shutil.copy(templates.store, tmp_path / "hub.sqlite")
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", sqlite_synchronous="NORMAL")
    alice = next(u for u in templates.credentials["users"] if u["username"] == "alice")
    admin = Operator("admin", frozenset({"admin"}), via="password")
    add_operator(runtime, "alice", ["operator"], by=admin, email=alice["email"])
    client = OidcClient(
        OidcSettings(
            issuer=provider.issuer,
            client_id=client_id,
            client_secret=templates.credentials["client_secret"],
            redirect_url=base_url + CALLBACK_PATH,
        )
    )
    app = build_app(runtime, console_links=ObjectLinks(), oidc=client)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    yield base_url, alice["password"]
    await runner.cleanup()
    await provider.stop()
    runtime.close()


async def test_the_served_console_signs_in_through_the_provider(served: tuple[str, str]) -> None:
    base_url, password = served
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(base_url + "/console/sign-in") as resp:
            assert resp.status == 200
            assert "/console/oidc/start" in await resp.text()
        async with browser.get(
            base_url + "/console/oidc/start?next=/console/exceptions", allow_redirects=False
        ) as resp:
            assert resp.status == 302, await resp.text()
            authorize_url = resp.headers["Location"]
        callback_url = await log_in(browser, authorize_url, "alice", password)
        async with browser.get(callback_url, allow_redirects=False) as resp:
            assert resp.status in (302, 303), await resp.text()
            assert URL(resp.headers["Location"]).path == "/console/exceptions"
        assert "q2c_session" in {c.key for c in jar}
        async with browser.get(base_url + "/console/exceptions", allow_redirects=False) as resp:
            assert resp.status == 200, await resp.text()
            assert "alice" in await resp.text()


async def test_without_a_provider_the_console_offers_no_such_sign_in(tmp_path: Path) -> None:
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", initialise=True)
    app = build_app(runtime, console_links=ObjectLinks())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as browser:
            async with browser.get(f"http://127.0.0.1:{port}/console/sign-in") as resp:
                assert resp.status == 200
                assert "/console/oidc/start" not in await resp.text()
            async with browser.get(
                f"http://127.0.0.1:{port}/console/oidc/start", allow_redirects=False
            ) as resp:
                assert resp.status == 404
    finally:
        await runner.cleanup()
        runtime.close()
