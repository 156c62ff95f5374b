"""The route table: each endpoint is a function of (store, params, path ids) returning JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .params import Params
from .store import JSON, Store

Handler = Callable[..., JSON]


@dataclass(frozen=True)
class Route:
    """``atomic`` routes are journaled: a Stripe error leaves no partial change behind."""

    method: str
    path: str
    handler: Handler
    atomic: bool = False


ROUTES: list[Route] = []


def route(method: str, path: str, *, atomic: bool = False) -> Callable[[Handler], Handler]:
    """Register ``handler(store, params, **path_ids)`` for ``method path``."""

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, path, handler, atomic))
        return handler

    return register


__all__ = ["JSON", "ROUTES", "Any", "Params", "Route", "Store", "route"]
