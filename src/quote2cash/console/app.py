"""The console's routes under ``/console`` and the middleware every page passes: a signed-in
session (else a redirect to sign-in), a CSRF token on every POST, and errors as pages (a 4xx
that says what was wrong; never a traceback)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

from quote2cash.console.context import CONSOLE, Console, console_of
from quote2cash.console.render import page, redirect
from quote2cash.console.session import COOKIE, CSRF_FIELD, SIGNED_IN, SignedIn, csrf_matches
from quote2cash.console.views import (
    audit,
    deals,
    operations,
    queue,
    reconciliation,
    replays,
    revenue,
    signin,
    stewardship,
    systems,
)
from quote2cash.engine.control import ControlError
from quote2cash.identity import NotAllowed, NotAuthenticated, sessions

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC: Final = ("/console/sign-in", "/console/password", "/console/static/", "/console/oidc/")
STATIC: Final = Path(__file__).parent / "static"


class BadInput(Exception):
    """A form value the console cannot use; the message names the field and what was expected."""


@web.middleware
async def pages_for_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRedirection as moved:
        return moved
    except NotAllowed as exc:
        return page(request, "error.html", status=403, title="Not allowed", message=str(exc))
    except NotAuthenticated as exc:
        return page(request, "error.html", status=401, title="Sign in again", message=str(exc))
    except (ControlError, BadInput) as exc:
        return page(request, "error.html", status=400, title="Not done", message=str(exc))
    except web.HTTPException as exc:
        if exc.status >= 500:
            raise
        return page(request, "error.html", status=exc.status, title=exc.reason, message=exc.text)
    except Exception as exc:
        log.error("console error on %s %s: %s", request.method, request.path, type(exc).__name__)
        return page(
            request,
            "error.html",
            status=500,
            title="Something went wrong",
            message="The console could not finish this; the hub's log names the cause.",
        )


@web.middleware
async def signed_in_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages need a live session; POSTs need its CSRF token. Sign-in pages are open."""
    console = console_of(request)
    session_id = request.cookies.get(COOKIE)
    found = None
    if session_id:
        found = await console.store(lambda: sessions.session_operator(console.runtime, session_id))
    if found is not None:
        operator, session = found
        request[SIGNED_IN] = SignedIn(operator, session.id, session.csrf)
    if request.path.startswith(PUBLIC):
        return await handler(request)
    if found is None:
        target = request.path_qs if request.method == "GET" else "/console/"
        return redirect("/console/sign-in?" + urlencode({"next": target}))
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        if not csrf_matches(request[SIGNED_IN].csrf, form.get(CSRF_FIELD)):
            return page(
                request,
                "error.html",
                status=403,
                title="Refused",
                message="This form has no valid CSRF token; reload the page and try again.",
            )
    return await handler(request)


def console_app(console: Console) -> web.Application:
    """The console as a sub-application, mounted at ``/console`` by ``add_console``."""
    app = web.Application(middlewares=[pages_for_errors, signed_in_only])
    app[CONSOLE] = console
    r = app.router
    r.add_get("/sign-in", signin.sign_in_page)
    r.add_post("/sign-in", signin.sign_in_submit)
    r.add_post("/password", signin.change_password_submit)
    r.add_post("/sign-out", signin.sign_out)
    r.add_get("/", deals.home)
    r.add_get("/search", deals.search)
    r.add_get("/trace/{correlation_id}", deals.trace)
    r.add_get("/exceptions", queue.exceptions)
    r.add_post("/exceptions/{pos}/retry", queue.retry)
    r.add_get("/exceptions/{pos}/correct", queue.correction_form)
    r.add_post("/exceptions/{pos}/correct", queue.correct)
    r.add_post("/exceptions/{pos}/resolve", queue.resolve)
    r.add_post("/quarantine/{id}/discard", queue.discard)
    r.add_get("/customers", stewardship.tasks)
    r.add_post("/customers/{system}/{local_id}/decide", stewardship.decide)
    r.add_get("/replays", replays.list_page)
    r.add_post("/replays", replays.request)
    r.add_post("/replays/preview", replays.preview)
    r.add_post("/replays/{id}/approve", replays.approve)
    r.add_post("/replays/{id}/reject", replays.reject)
    r.add_get("/systems", systems.status)
    r.add_post("/systems/{system}/pause", systems.pause)
    r.add_post("/systems/{system}/resume", systems.resume)
    r.add_post("/systems/{system}/window", systems.window)
    r.add_get("/audit", audit.entries)
    r.add_post("/audit/verify", audit.verify)
    r.add_get("/reconciliation", reconciliation.report)
    r.add_get("/operations", operations.operations)
    r.add_get("/revenue", revenue.revenue)
    r.add_static("/static/", STATIC, append_version=True)
    return app


def add_console(app: web.Application, console: Console) -> web.Application:
    """Mount the console under ``/console``; returns the sub-application. OpenID Connect routes
    (``console.oidc_routes.add_oidc_routes``) go on ``app`` with ``views.signin.start_session``
    as their ``start_session``; set ``console.oidc_enabled`` to show the button."""
    sub = console_app(console)
    app[CONSOLE] = console
    app.add_subapp("/console", sub)

    async def to_home(request: web.Request) -> web.StreamResponse:
        return redirect("/console/")

    app.router.add_get("/console", to_home)
    return sub
