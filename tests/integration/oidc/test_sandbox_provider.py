"""The sandbox provider's own rules, spoken to as any OAuth client would (no hub involved)."""

from __future__ import annotations

import base64
import stat
from typing import Any

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from yarl import URL

from quote2cash.console.oidc_routes import CALLBACK_PATH
from quote2cash.sandbox.oidc.directory import CLIENTS_FILE, USERS_FILE
from quote2cash.sandbox.oidc.keys import KEY_FILE

from .conftest import Hub, log_in

VERIFIER = "v" * 64


def _authorize_url(hub: Hub, **changes: str) -> str:
    params = {
        "response_type": "code",
        "client_id": hub.credentials["client_id"],
        "redirect_uri": hub.base_url + CALLBACK_PATH,
        "scope": "openid email profile",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": create_s256_code_challenge(VERIFIER),
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return str(URL(hub.provider.issuer + "/authorize").with_query(params))


async def _code(hub: Hub, browser: aiohttp.ClientSession) -> str:
    callback = await log_in(browser, _authorize_url(hub), "alice", hub.password("alice"))
    assert URL(callback).query["state"] == "s1"
    return URL(callback).query["code"]


async def _redeem(
    hub: Hub, browser: aiohttp.ClientSession, code: str, *, basic: bool = True, **changes: str
) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": hub.base_url + CALLBACK_PATH,
        "code_verifier": VERIFIER,
    }
    headers = {}
    if basic:
        pair = f"{hub.credentials['client_id']}:{hub.credentials['client_secret']}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form.update(
            client_id=hub.credentials["client_id"], client_secret=hub.credentials["client_secret"]
        )
    form.update(changes)
    async with browser.post(hub.provider.issuer + "/token", data=form, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_discovery_describes_the_code_flow_with_pkce(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    async with browser.get(hub.provider.issuer + "/.well-known/openid-configuration") as resp:
        doc = await resp.json()
    assert doc["issuer"] == hub.provider.issuer
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    async with browser.get(doc["jwks_uri"]) as resp:
        (key,) = (await resp.json())["keys"]
    assert key["kty"] == "RSA" and "d" not in key and key["kid"]


async def test_files_holding_keys_and_hashes_are_private(hub: Hub) -> None:
    for name in (KEY_FILE, USERS_FILE, CLIENTS_FILE):
        assert stat.S_IMODE((hub.folder / name).stat().st_mode) == 0o600
    stored = (hub.folder / USERS_FILE).read_text() + (hub.folder / CLIENTS_FILE).read_text()
    assert hub.password("alice") not in stored
    assert hub.credentials["client_secret"] not in stored


async def test_client_secret_post_and_userinfo(hub: Hub, browser: aiohttp.ClientSession) -> None:
    status, tokens = await _redeem(hub, browser, await _code(hub, browser), basic=False)
    assert status == 200 and tokens["token_type"] == "Bearer"
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with browser.get(hub.provider.issuer + "/userinfo", headers=headers) as resp:
        assert (await resp.json())["email"] == hub.email("alice")
    async with browser.get(hub.provider.issuer + "/userinfo") as resp:
        assert resp.status == 401


async def test_a_wrong_verifier_redirect_or_secret_is_refused(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    status, body = await _redeem(hub, browser, await _code(hub, browser), code_verifier="w" * 64)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "code_verifier" in body["error_description"]
    status, body = await _redeem(
        hub, browser, await _code(hub, browser), redirect_uri=hub.base_url + "/elsewhere"
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await _redeem(
        hub, browser, await _code(hub, browser), basic=False, client_secret="guess"
    )
    assert (status, body["error"]) == (401, "invalid_client")


async def test_an_authentication_method_not_announced_is_refused(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    hub.provider.provider.token_auth_methods = ("client_secret_post",)
    status, body = await _redeem(hub, browser, await _code(hub, browser), basic=True)
    assert (status, body["error"]) == (401, "invalid_client")
    assert "client_secret_basic" in body["error_description"]


async def test_a_second_use_of_a_code_revokes_its_access_token(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    code = await _code(hub, browser)
    status, tokens = await _redeem(hub, browser, code)
    assert status == 200
    status, body = await _redeem(hub, browser, code)
    assert (status, body["error_description"]) == (400, "authorization code was already used")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with browser.get(hub.provider.issuer + "/userinfo", headers=headers) as resp:
        assert resp.status == 401


async def test_authorize_refuses_unknown_clients_foreign_redirects_and_missing_pkce(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    async with browser.get(_authorize_url(hub, client_id="nobody")) as resp:
        assert resp.status == 400 and "unknown client_id" in await resp.text()
    async with browser.get(_authorize_url(hub, redirect_uri="http://127.0.0.1:1/cb")) as resp:
        assert resp.status == 400 and "redirect_uri is not registered" in await resp.text()
    url = _authorize_url(hub, code_challenge_method="plain")
    async with browser.get(url, allow_redirects=False) as resp:
        location = URL(resp.headers["Location"])
    assert location.query["error"] == "invalid_request"
    assert location.query["state"] == "s1"
