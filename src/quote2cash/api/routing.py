"""The route table: every route's method, path, role, parameters, body and answers in one
place, so the app that serves them and the OpenAPI document that describes them cannot drift.

Guarantee: query and path parameters and JSON bodies are checked against the table before a
handler runs; what fails is a 400 naming the parameter or field and what was expected. Unknown
query parameters are refused under ``/v1`` only (a webhook URL may carry the sender's own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from quote2cash.api.auth import operator_of
from quote2cash.api.bodies import BodyError, parse_body
from quote2cash.identity import Operator

if TYPE_CHECKING:
    from quote2cash.api.app import HubApi

MAX_ID: Final = 2**63 - 1


@dataclass(frozen=True)
class Param:
    """A query or path parameter: ``kind`` is ``string`` or ``integer``."""

    name: str
    description: str
    kind: str = "string"
    where: str = "query"
    enum: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 300

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.enum:
            out["enum"] = list(self.enum)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.kind == "string":
            out["maxLength"] = self.max_length
            if self.where == "path":
                out["minLength"] = 1
        return out


@dataclass
class Call:
    """One request as a handler sees it: parameters and body already checked."""

    request: web.Request
    params: dict[str, Any]
    body: Any = None

    @property
    def operator(self) -> Operator:
        return operator_of(self.request)


Handler = Callable[["HubApi", Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    role: str | None = "viewer"
    """The role the route needs (None: no token, e.g. webhooks and /health)."""
    params: tuple[Param, ...] = ()
    body: type | None = None
    ok: int = 200
    answer: type | None = None
    """The msgspec Struct the success answer's shape is documented as (None: an object)."""
    answers: Mapping[int, str] = field(default_factory=dict)
    """Other success or expected answers (status -> description), beyond the error set."""
    tag: str = "reads"
    media: str = "application/json"
    """The success answer's content type (``/metrics`` answers Prometheus text)."""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")


class ParameterError(ValueError):
    """A parameter that is not what the table says; ``status`` 404 for an id in the path."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _check(param: Param, raw: str) -> Any:
    where = "path segment" if param.where == "path" else "query parameter"
    if len(raw) > param.max_length:
        raise ParameterError(
            400, "invalid_parameter", f"{where} {param.name!r} is longer than {param.max_length}"
        )
    if param.kind == "integer":
        low = param.minimum if param.minimum is not None else -MAX_ID
        high = param.maximum if param.maximum is not None else MAX_ID
        value = int(raw) if raw.isascii() and raw.lstrip("-").isdigit() and len(raw) < 20 else None
        if value is None or not low <= value <= high:
            if param.where == "path":
                raise ParameterError(404, "not_found", f"no {param.description} {raw!r}")
            raise ParameterError(
                400,
                "invalid_parameter",
                f"query parameter {param.name!r} is {raw!r}; expected a whole number from "
                f"{low} to {high}",
            )
        return value
    if param.enum and raw not in param.enum:
        raise ParameterError(
            400,
            "invalid_parameter",
            f"{where} {param.name!r} is {raw!r}; expected one of {list(param.enum)}",
        )
    return raw


def checked(route: Route, hub: HubApi) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler for ``route``: check parameters and body, then run the handler."""

    action = route.summary.rstrip(".").lower()
    checked_params = tuple(p for p in route.params if p.where != "header")
    known = {p.name for p in route.params if p.where == "query"}
    refuses_unknown = route.path.startswith("/v1")

    async def handle(request: web.Request) -> web.StreamResponse:
        if route.role is not None:
            operator_of(request).require(route.role, action)
        params: dict[str, Any] = {}
        for param in checked_params:
            source: Mapping[str, str] = (
                request.match_info if param.where == "path" else request.query
            )
            raw = source.get(param.name)
            if raw is None or (raw == "" and param.kind == "string" and not param.enum):
                continue
            params[param.name] = _check(param, raw)
        query = request.query
        unknown = sorted(set(query) - known) if query else []
        if unknown and refuses_unknown:
            raise ParameterError(
                400,
                "invalid_parameter",
                f"unknown query parameter(s) {unknown}; expected some of {sorted(known)}",
            )
        body: Any = None
        if route.body is not None:
            try:
                body = parse_body(await request.read(), route.body)
            except BodyError as exc:
                raise ParameterError(400, "invalid_body", str(exc)) from None
        return await route.handler(hub, Call(request, params, body))

    return handle
