"""The console's session cookie and CSRF checks: the cookie is opaque (the store keeps it
hashed), HttpOnly and SameSite; every POST carries the session's CSRF token or is refused."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from aiohttp import web

from quote2cash.identity import Operator

COOKIE: Final = "q2c_session"
SIGNIN_COOKIE: Final = "q2c_signin"
"""A random value the sign-in forms repeat in a hidden field (double submit): a form posted
from another site cannot sign a victim in under the attacker's name."""
CSRF_FIELD: Final = "csrf"
SAME_SITE: Final = "Lax"
"""Lax, not Strict: the OpenID Connect callback arrives as a top-level navigation from the
provider's site, and a Strict cookie set before the redirect would not be sent with it. Every
state change is a POST, which Lax does not send cross-site, and each POST carries a CSRF token."""
DEFAULT_TTL: Final = timedelta(hours=8)


@dataclass(frozen=True)
class SignedIn:
    """The operator a request's session belongs to, and that session's CSRF token."""

    operator: Operator
    session_id: str
    csrf: str


SIGNED_IN: Final = web.RequestKey("console_signed_in", SignedIn)


def is_secure(request: web.Request) -> bool:
    """Served over https (directly or behind a proxy that says so): cookies get ``Secure``."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, session_id: str, max_age: int
) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite=SAME_SITE,
        secure=is_secure(request),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console")


def csrf_matches(expected: str, sent: object) -> bool:
    return isinstance(sent, str) and bool(sent) and hmac.compare_digest(expected, sent)


def signin_token(request: web.Request) -> tuple[str, bool]:
    """The sign-in form's double-submit value, and whether it must be set as a new cookie."""
    current = request.cookies.get(SIGNIN_COOKIE, "")
    if len(current) >= 32:
        return current, False
    return secrets.token_urlsafe(32), True


def set_signin_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        SIGNIN_COOKIE,
        value,
        path="/console",
        httponly=True,
        samesite=SAME_SITE,
        secure=is_secure(request),
    )
