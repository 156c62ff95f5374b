"""The console's OpenID Connect sign-in against the sandbox provider, over real HTTP."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import aiohttp
import pytest
from yarl import URL

from quote2cash.console.oidc_routes import CALLBACK_PATH, STATE_COOKIE
from quote2cash.identity.sessions import session_operator

from .conftest import Hub, begin, call_back, log_in, state_cookie


def _alice(hub: Hub) -> None:
    hub.add_operator("alice", "operator")


async def test_a_known_operator_signs_in_with_the_roles_of_their_account(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    authorize_url = await begin(browser, hub)
    query = URL(authorize_url).query
    assert query["code_challenge_method"] == "S256"
    assert query["state"] and query["nonce"] and query["code_challenge"]
    callback_url = await log_in(browser, authorize_url, "alice", hub.password("alice"))
    status, body = await call_back(browser, callback_url)
    assert (status, body) == (200, {"operator": "alice", "roles": ["operator"], "via": "oidc"})
    cookies = {c.key: c.value for c in browser.cookie_jar}
    assert STATE_COOKIE not in cookies
    found = session_operator(hub.runtime, cookies["q2c_session"])
    assert found is not None
    assert (found[0].name, found[0].roles) == ("alice", frozenset({"operator"}))


async def test_a_provider_taking_the_secret_only_in_the_form_is_served_so(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    hub.provider.provider.token_auth_methods = ("client_secret_post",)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    status, body = await call_back(browser, callback_url)
    assert (status, body["operator"]) == (200, "alice")


async def test_the_page_asked_for_before_sign_in_reaches_the_session_opener(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    authorize_url = await begin(browser, hub, "/console/oidc/start?next=/console/trace/C-1")
    callback_url = await log_in(browser, authorize_url, "alice", hub.password("alice"))
    assert "next" not in URL(callback_url).query
    status, body = await call_back(browser, callback_url)
    assert (status, body["next"]) == (200, "/console/trace/C-1")


async def test_following_every_redirect_ends_in_a_session(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    authorize_url = await begin(browser, hub)
    async with browser.get(authorize_url) as resp:
        page = await resp.text()
    request_id = page.split("name='request_id' value='")[1].split("'")[0]
    form = {"request_id": request_id, "username": "alice", "password": hub.password("alice")}
    async with browser.post(f"{hub.provider.issuer}/authorize/login", data=form) as resp:
        assert resp.status == 200
        assert str(resp.url).startswith(hub.base_url + CALLBACK_PATH)
        assert (await resp.json())["operator"] == "alice"


async def test_an_identity_without_an_operator_account_is_refused(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "bob", hub.password("bob"))
    status, body = await call_back(browser, callback_url)
    assert status == 403
    assert body["error"]["code"] == "not_an_operator"
    assert hub.email("bob") in body["error"]["message"]
    assert "q2c_session" not in {c.key for c in browser.cookie_jar}


async def test_a_disabled_operator_is_refused(hub: Hub, browser: aiohttp.ClientSession) -> None:
    _alice(hub)
    hub.disable("alice")
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    status, body = await call_back(browser, callback_url)
    assert status == 403
    assert "no enabled operator account" in body["error"]["message"]


async def test_an_email_the_provider_has_not_verified_is_refused(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    users = hub.provider.provider.directory.users
    users["alice"] = replace(users["alice"], email_verified=False)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    status, body = await call_back(browser, callback_url)
    assert status == 403
    assert "is not verified" in body["error"]["message"]


async def test_a_wrong_password_stays_at_the_provider(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    authorize_url = await begin(browser, hub)
    async with browser.get(authorize_url) as resp:
        page = await resp.text()
    request_id = page.split("name='request_id' value='")[1].split("'")[0]
    form = {"request_id": request_id, "username": "alice", "password": "not-it"}
    async with browser.post(
        f"{hub.provider.issuer}/authorize/login", data=form, allow_redirects=False
    ) as resp:
        assert resp.status == 401
        assert "wrong user name or password" in await resp.text()


async def test_a_tampered_state_is_refused(hub: Hub, browser: aiohttp.ClientSession) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    forged = URL(callback_url).update_query(state="forged-state")
    status, body = await call_back(browser, str(forged))
    assert status == 400
    assert "state parameter does not match" in body["error"]["message"]


async def test_a_callback_in_another_browser_is_refused(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    async with aiohttp.ClientSession() as other_browser:
        status, body = await call_back(other_browser, callback_url)
    assert status == 400
    assert body["error"]["code"] == "sign_in_state"
    assert "no sign-in was started in this browser" in body["error"]["message"]


async def test_an_altered_state_cookie_is_refused(hub: Hub, browser: aiohttp.ClientSession) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    sealed = state_cookie(browser)
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    status, body = await call_back(browser, callback_url, flipped)
    assert status == 400
    assert "sign-in state in this browser is not valid" in body["error"]["message"]
    assert (await call_back(browser, callback_url, sealed))[0] == 200


async def test_a_replayed_code_is_refused(hub: Hub, browser: aiohttp.ClientSession) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    sealed = state_cookie(browser)
    assert (await call_back(browser, callback_url))[0] == 200
    status, body = await call_back(browser, callback_url, sealed)
    assert status == 400
    assert "refused the authorization code" in body["error"]["message"]


async def test_an_expired_code_is_refused(hub: Hub, browser: aiohttp.ClientSession) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    hub.provider_clock.offset += hub.provider.provider.code_ttl
    status, body = await call_back(browser, callback_url)
    assert status == 400
    assert body["error"]["code"] == "sign_in_refused"
    assert "expired" in body["error"]["message"]


async def test_a_sign_in_left_too_long_is_refused(hub: Hub, browser: aiohttp.ClientSession) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    hub.hub_clock.offset += timedelta(minutes=11)
    status, body = await call_back(browser, callback_url)
    assert status == 400
    assert "expired" in body["error"]["message"]


async def test_a_nonce_changed_on_the_way_to_the_provider_is_refused(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    authorize_url = URL(await begin(browser, hub)).update_query(nonce="attacker-nonce")
    callback_url = await log_in(browser, str(authorize_url), "alice", hub.password("alice"))
    status, body = await call_back(browser, callback_url)
    assert status == 401
    assert "nonce does not match" in body["error"]["message"]


async def test_an_id_token_expired_on_arrival_is_refused(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    hub.provider_clock.offset -= hub.provider.provider.token_ttl * 2
    status, body = await call_back(browser, callback_url)
    assert status == 401
    assert "ID token has expired" in body["error"]["message"]


async def test_the_provider_saying_no_is_a_clear_refusal(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    await begin(browser, hub)
    url = URL(hub.base_url + CALLBACK_PATH).with_query(error="access_denied", state="x")
    async with browser.get(url, headers={"Accept": "text/html"}) as resp:
        assert resp.status == 400
        assert resp.content_type == "text/html"
        assert "the provider did not sign you in (access_denied)" in await resp.text()
    url = url.with_query(error="x\nforged log line<script>")
    status, body = await call_back(browser, str(url))
    assert (status, body["error"]["message"]) == (
        400,
        "the provider did not sign you in (xforgedloglinescript)",
    )


async def test_a_callback_without_code_is_refused(hub: Hub, browser: aiohttp.ClientSession) -> None:
    status, body = await call_back(browser, hub.base_url + CALLBACK_PATH)
    assert status == 400
    assert "lacks the code or state" in body["error"]["message"]


async def test_an_unreachable_provider_is_a_502_not_a_500(hub: Hub) -> None:
    """A hub process that starts while the provider is down has no discovery cached."""
    await hub.provider.stop()
    hub.client._metadata = None
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(hub.base_url + "/console/sign-in/oidc") as resp,
    ):
        assert resp.status == 502
        assert "unreachable" in (await resp.json())["error"]["message"]


async def test_no_secret_reaches_the_logs_at_debug(
    hub: Hub, browser: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _alice(hub)
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    code = URL(callback_url).query["code"]
    assert (await call_back(browser, callback_url))[0] == 200
    hub.client.settings.client_secret = type(hub.client.settings.client_secret)("wrong-secret")
    second = await log_in(browser, await begin(browser, hub), "bob", hub.password("bob"))
    status, _body = await call_back(browser, second)
    assert status == 502
    assert "refused the hub's client id or secret" in caplog.text
    for secret in (hub.credentials["client_secret"], "wrong-secret", hub.password("alice")):
        assert secret not in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("quote2cash")]
    assert ours and not any(code in line for line in ours)
