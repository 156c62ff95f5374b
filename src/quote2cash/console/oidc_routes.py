"""The console's OpenID Connect sign-in: ``GET /console/sign-in/oidc`` and its callback.

The sign-in in progress travels in a sealed, HttpOnly, SameSite=Lax cookie bound to the
``state`` parameter, so a forged or replayed callback fails and any hub process can finish it.
Every failure is a 4xx (502 if the provider is unreachable) naming what was wrong, logged
without codes, tokens or secrets; a success hands the operator to ``start_session``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from html import escape

from aiohttp import web

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import IdentityError, NotAllowed, Operator, accounts
from quote2cash.identity.oidc import (
    CodeRefused,
    FindByEmail,
    OidcClient,
    ProviderUnavailable,
    operator_for,
)
from quote2cash.identity.oidc_state import SignInStateInvalid, open_pending, seal_pending

log = logging.getLogger(__name__)

SIGN_IN_PATH = "/console/sign-in/oidc"
START_ALIAS_PATH = "/console/oidc/start"
CALLBACK_PATH = "/console/oidc/callback"
STATE_COOKIE = "q2c_oidc_signin"

_OAUTH_ERROR = re.compile(r"[^A-Za-z0-9_.-]")

StartSession = Callable[[web.Request, Operator], Awaitable[web.StreamResponse]]


class CallbackRefused(IdentityError):
    """The callback request itself is unusable (no code, no state, state mismatch)."""


def add_oidc_routes(
    app: web.Application,
    *,
    runtime: Runtime,
    client: OidcClient,
    start_session: StartSession,
    find_by_email: FindByEmail = accounts.find_by_email,
) -> None:
    """Add the routes; the provider client is closed with the app.

    ``start_session`` opens the console session for the signed-in operator and returns the
    response (a redirect into the console setting the session cookie); it sees the ``next``
    query parameter the sign-in started with, as the password sign-in's does.
    """
    secret = client.settings.client_secret.get_secret_value()
    secure = client.settings.redirect_url.startswith("https://")

    async def sign_in(request: web.Request) -> web.StreamResponse:
        try:
            url, pending = await client.begin(request.query.get("next"))
        except ProviderUnavailable as exc:
            return _refusal(request, 502, "provider_unavailable", str(exc))
        response = web.Response(status=302, headers={"Location": url})
        response.set_cookie(
            STATE_COOKIE,
            seal_pending(pending, secret),
            max_age=int((pending.expires_at - client.clock()).total_seconds()),
            path=CALLBACK_PATH,
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse
        try:
            operator, return_to = await _finish(request)
        except ProviderUnavailable as exc:
            response = _refusal(request, 502, "provider_unavailable", str(exc))
        except SignInStateInvalid as exc:
            response = _refusal(request, 400, "sign_in_state", str(exc))
        except (CallbackRefused, CodeRefused) as exc:
            response = _refusal(request, 400, "sign_in_refused", str(exc))
        except NotAllowed as exc:
            response = _refusal(request, 403, "not_an_operator", str(exc))
        except IdentityError as exc:
            response = _refusal(request, 401, "not_authenticated", str(exc))
        else:
            if return_to:
                request = request.clone(rel_url=request.rel_url.with_query(next=return_to))
            response = await start_session(request, operator)
        response.del_cookie(STATE_COOKIE, path=CALLBACK_PATH)
        return response

    async def _finish(request: web.Request) -> tuple[Operator, str | None]:
        query = request.query
        if "error" in query:
            reason = _OAUTH_ERROR.sub("", query.get("error", ""))[:64] or "no reason given"
            raise CallbackRefused(f"the provider did not sign you in ({reason})")
        code, state = query.get("code"), query.get("state")
        if not code or not state:
            raise CallbackRefused("the callback lacks the code or state parameter")
        cookie = request.cookies.get(STATE_COOKIE)
        if not cookie:
            raise SignInStateInvalid(
                "no sign-in was started in this browser (or its cookie was blocked); start again"
            )
        pending = open_pending(cookie, secret, client.clock())
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise CallbackRefused("the state parameter does not match this browser's sign-in")
        identity = await client.finish(code, pending)
        operator = await asyncio.to_thread(operator_for, runtime, identity, find_by_email)
        return operator, pending.return_to

    async def close_client(_app: web.Application) -> None:
        await client.close()

    app.router.add_get(SIGN_IN_PATH, sign_in)
    app.router.add_get(START_ALIAS_PATH, sign_in)
    app.router.add_get(CALLBACK_PATH, callback)
    app.on_cleanup.append(close_client)


def _refusal(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """A clear answer: a small HTML page for browsers, the API's JSON error shape otherwise."""
    log.warning(
        "OpenID Connect sign-in refused (%s) from %s: %s", code, request.remote or "?", message
    )
    if "text/html" in request.headers.get("Accept", ""):
        body = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Sign-in refused</title>"
            f"</head><body><h1>Sign-in refused</h1><p>{escape(message)}</p>"
            f"<p><a href='{SIGN_IN_PATH}'>Try again</a></p></body></html>"
        )
        return web.Response(text=body, status=status, content_type="text/html")
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
