"""Who a ``/v1`` request acts for: the bearer middleware puts the authenticated Operator here."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from quote2cash.identity import NotAuthenticated, Operator

OPERATOR: Final = web.RequestKey("operator", Operator)
"""The operator whose token authenticated this ``/v1`` request."""


def operator_of(request: web.Request) -> Operator:
    """The request's authenticated operator; NotAuthenticated (401) if the route has none."""
    operator: Operator | None = request.get(OPERATOR)
    if operator is None:
        raise NotAuthenticated("send 'Authorization: Bearer <token>'")
    return operator


def client_of(request: web.Request) -> str:
    """The client's address as throttling and failure logs name it."""
    return request.remote or "unknown"
