"""Sign-in with name and password, the forced change of a one-time password, and sign-out;
``start_session`` opens the session for any sign-in (password or OpenID Connect)."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from quote2cash.console.context import console_of
from quote2cash.console.render import page, redirect
from quote2cash.console.session import (
    SIGNED_IN,
    clear_session_cookie,
    csrf_matches,
    set_session_cookie,
    set_signin_cookie,
    signin_token,
)
from quote2cash.identity import IdentityError, Operator, SignInRefused, accounts, sessions, signin
from quote2cash.identity.signin import PasswordChangeRequired

HOME = "/console/"


def safe_next(raw: str | None) -> str:
    """Only a console path of this site: never an open redirect."""
    if not raw or not raw.startswith("/console") or raw.startswith("//"):
        return HOME
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return HOME
    return raw


async def start_session(request: web.Request, operator: Operator) -> web.StreamResponse:
    """Open a session for ``operator``, set the cookie and go to the page asked for (the
    request's ``next`` query parameter, a console path)."""
    return await _open_session(request, operator, safe_next(request.query.get("next")))


async def _open_session(request: web.Request, operator: Operator, nxt: str) -> web.Response:
    console = console_of(request)
    session = await console.store(
        lambda: sessions.open_session(console.runtime, operator, ttl=console.session_ttl)
    )
    response = redirect(nxt)
    set_session_cookie(request, response, session.id, int(console.session_ttl.total_seconds()))
    return response


def _form(
    request: web.Request, template: str, *, status: int = 200, **values: object
) -> web.Response:
    token, fresh = signin_token(request)
    response = page(request, template, status=status, signin_csrf=token, **values)
    if fresh:
        set_signin_cookie(request, response, token)
    return response


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    if request.get(SIGNED_IN):
        return redirect(HOME)
    console = console_of(request)
    return _form(
        request,
        "signin.html",
        error=None,
        name="",
        next=safe_next(request.query.get("next")),
        oidc=console.oidc_enabled,
    )


async def sign_in_submit(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    nxt = safe_next(str(form.get("next", "")) or None)
    if not csrf_matches(request.cookies.get("q2c_signin", ""), form.get("signin_csrf")):
        return _form(
            request,
            "signin.html",
            status=403,
            error="The form expired; sign in again.",
            name=name,
            next=nxt,
            oidc=console.oidc_enabled,
        )
    client = request.remote or "unknown"
    try:
        operator = await console.store(
            lambda: signin.sign_in(console.runtime, name, password, client=client)
        )
    except PasswordChangeRequired:
        return _form(request, "password.html", name=name, error=None, next=nxt)
    except SignInRefused as exc:
        return _form(
            request,
            "signin.html",
            status=401,
            error=str(exc),
            name=name,
            next=nxt,
            oidc=console.oidc_enabled,
        )
    return await _open_session(request, operator, nxt)


async def change_password_submit(request: web.Request) -> web.StreamResponse:
    """The one-time password is replaced before any console page opens."""
    console = console_of(request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    old = str(form.get("old_password", ""))
    new = str(form.get("new_password", ""))
    again = str(form.get("new_password_again", ""))
    nxt = safe_next(str(form.get("next", "")) or None)

    def refuse(message: str, status: int) -> web.Response:
        return _form(request, "password.html", status=status, name=name, error=message, next=nxt)

    if not csrf_matches(request.cookies.get("q2c_signin", ""), form.get("signin_csrf")):
        return refuse("The form expired; sign in again.", 403)
    if new != again:
        return refuse("The new passwords differ; type the same one twice.", 400)
    if new == old:
        return refuse("The new password must differ from the one-time password.", 400)
    client = request.remote or "unknown"
    try:
        await console.store(
            lambda: accounts.set_password(console.runtime, name, old, new, client=client)
        )
        operator = await console.store(
            lambda: signin.sign_in(console.runtime, name, new, client=client)
        )
    except SignInRefused as exc:
        return refuse(str(exc), 401)
    except (IdentityError, ValueError) as exc:
        return refuse(str(exc), 400)
    return await _open_session(request, operator, nxt)


async def sign_out(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    signed_in = request[SIGNED_IN]
    await console.store(lambda: sessions.close_session(console.runtime, signed_in.session_id))
    response = redirect("/console/sign-in")
    clear_session_cookie(response)
    return response
