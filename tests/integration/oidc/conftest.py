"""A sandbox OpenID provider and a console app using it, both on 127.0.0.1 ephemeral ports.

The browser is an aiohttp client with a cookie jar that steps through the redirects, so each
test can stop, tamper with or replay any leg of the code flow.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from quote2cash.console.oidc_routes import (
    CALLBACK_PATH,
    SIGN_IN_PATH,
    STATE_COOKIE,
    StartSession,
    add_oidc_routes,
)
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.identity.accounts import add_operator, disable_operator
from quote2cash.identity.oidc import OidcClient, OidcSettings
from quote2cash.identity.sessions import open_session
from quote2cash.sandbox.oidc.directory import load_directory, save_directory
from quote2cash.sandbox.oidc.keys import load_or_create_signing_key
from quote2cash.sandbox.oidc.provider import RunningProvider, start_provider
from quote2cash.sandbox.oidc.setup import prepare_provider
from support.identity import first_admin


@dataclass
class Clock:
    """Real time plus an offset the test moves."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Hub:
    base_url: str
    provider: RunningProvider
    provider_clock: Clock
    hub_clock: Clock
    client: OidcClient
    credentials: dict[str, Any]
    folder: Path
    runtime: Runtime
    admin: Operator

    def add_operator(self, username: str, *roles: str) -> None:
        """An operator account an admin made, with the sandbox person's email."""
        add_operator(self.runtime, username, roles, by=self.admin, email=self.email(username))

    def disable(self, username: str) -> None:
        disable_operator(self.runtime, username, by=self.admin)

    def password(self, username: str) -> str:
        return next(u["password"] for u in self.credentials["users"] if u["username"] == username)

    def email(self, username: str) -> str:
        return next(u["email"] for u in self.credentials["users"] if u["username"] == username)


def _session_starter(runtime: Runtime) -> StartSession:
    """What the console does after a sign-in, answering JSON so tests can read the outcome."""

    async def start_session(request: web.Request, operator: Operator) -> web.StreamResponse:
        session = open_session(runtime, operator)
        response = web.json_response(
            {"operator": operator.name, "roles": sorted(operator.roles), "via": operator.via}
            | ({"next": request.query["next"]} if "next" in request.query else {})
        )
        response.set_cookie("q2c_session", session.id, httponly=True, samesite="Strict")
        return response

    return start_session


@dataclass(frozen=True)
class Templates:
    """Made once per session (key generation, hashing and migrations are slow); copied per test."""

    provider_folder: Path
    credentials: dict[str, Any]
    store: Path


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    base = tmp_path_factory.mktemp("oidc-templates")
    credentials = prepare_provider(base / "oidc", [])
    load_or_create_signing_key(base / "oidc")
    store = base / "hub.sqlite"
    runtime = Runtime.open(f"sqlite:///{store}", sqlite_synchronous="NORMAL")
    first_admin(runtime)
    runtime.close()
    return Templates(base / "oidc", credentials, store)


@pytest.fixture
async def hub(tmp_path: Path, templates: Templates) -> AsyncIterator[Hub]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    folder = tmp_path / "oidc"
    shutil.copytree(templates.provider_folder, folder)
    directory = load_directory(folder)
    client = directory.clients[templates.credentials["client_id"]]
    registered = replace(client, redirect_uris=(base_url + CALLBACK_PATH,))
    save_directory(folder, replace(directory, clients={client.client_id: registered}))
    credentials = templates.credentials
    provider_clock, hub_clock = Clock(), Clock()
    provider = await start_provider(folder, clock=provider_clock)
    settings = OidcSettings(
        issuer=provider.issuer,
        client_id=credentials["client_id"],
        client_secret=credentials["client_secret"],
        redirect_url=base_url + CALLBACK_PATH,
    )
    client = OidcClient(settings, clock=hub_clock)
    shutil.copy(templates.store, tmp_path / "hub.sqlite")
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", sqlite_synchronous="NORMAL")
    admin = Operator("admin", frozenset({"admin"}), via="password")
    app = web.Application()
    add_oidc_routes(app, runtime=runtime, client=client, start_session=_session_starter(runtime))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    yield Hub(
        base_url,
        provider,
        provider_clock,
        hub_clock,
        client,
        credentials,
        folder,
        runtime,
        admin,
    )
    await runner.cleanup()
    await provider.stop()
    runtime.close()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def begin(browser: aiohttp.ClientSession, hub: Hub, path: str = SIGN_IN_PATH) -> str:
    """Open the console's sign-in; returns the provider URL it redirects to."""
    async with browser.get(hub.base_url + path, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def log_in(
    browser: aiohttp.ClientSession, authorize_url: str, username: str, password: str
) -> str:
    """Fill the provider's login form; returns the callback URL it redirects to."""
    async with browser.get(authorize_url) as resp:
        assert resp.status == 200, await resp.text()
        page = await resp.text()
    request_id = re.search(r"name='request_id' value='([^']+)'", page)
    assert request_id is not None
    form = {"request_id": request_id.group(1), "username": username, "password": password}
    login_url = str(URL(authorize_url).with_path("/authorize/login").with_query({}))
    async with browser.post(login_url, data=form, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def call_back(
    browser: aiohttp.ClientSession, callback_url: str, state_cookie: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Follow the provider's redirect to the callback, with this browser's cookies or with
    ``state_cookie`` as the only cookie (a replay or a forgery)."""
    if state_cookie is None:
        async with browser.get(callback_url, allow_redirects=False) as resp:
            return resp.status, await resp.json()
    headers = {"Cookie": f"{STATE_COOKIE}={state_cookie}"}
    async with (
        aiohttp.ClientSession() as bare,
        bare.get(callback_url, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.json()


def state_cookie(browser: aiohttp.ClientSession) -> str:
    return next(c.value for c in browser.cookie_jar if c.key == STATE_COOKIE)
