"""The OpenAPI 3.1 document, generated from the route table and the msgspec body Structs.

Guarantee: every route the app serves is in the document with its parameters, body, roles and
answers, because both are made from ``routes.ROUTES``; errors share one schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, Final

import msgspec

import quote2cash
from quote2cash.api.routing import Route

REF: Final = "#/components/schemas/{name}"
ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "what a client can act on"},
                "message": {"type": "string", "description": "names the field and the rule"},
            },
        }
    },
}
ERRORS: Final = {
    400: "a parameter or body field is not what this document says (the message names it)",
    401: "no valid bearer token (unknown, revoked, expired, or its owner disabled)",
    403: "the token's operator lacks the role this route needs",
    404: "nothing with that id, or no such route",
    405: "the route does not take this method",
    409: "the decision conflicts with the current state (e.g. already decided)",
    413: "the body is larger than 4 MiB",
    503: "the hub's store cannot be reached; try again later",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(name="Error")}}},
    }


def _object(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "security": [{"bearer": []}] if route.role is not None else [],
    }
    if route.role is not None:
        op["description"] = f"Needs a token carrying the role `{route.role}`."
    if route.params:
        op["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.where in ("path", "header"),
                "description": p.description,
                "schema": p.schema(),
            }
            for p in route.params
        ]
    if route.body is not None:
        op["requestBody"] = {
            "required": _has_required(route.body),
            "content": {
                "application/json": {"schema": {"$ref": REF.format(name=route.body.__name__)}}
            },
        }
    responses: dict[str, Any] = {str(route.ok): _object("done")}
    if route.media != "application/json":
        responses[str(route.ok)]["content"] = {route.media: {"schema": {"type": "string"}}}
    if route.answer is not None:
        responses[str(route.ok)]["content"]["application/json"]["schema"] = {
            "$ref": REF.format(name=route.answer.__name__)
        }
    for status, description in route.answers.items():
        responses[str(status)] = _object(description)
    for status, description in ERRORS.items():
        if str(status) in responses:
            continue
        if status in (401, 403) and route.role is None:
            continue
        if status == 413 and route.method != "POST":
            continue
        responses[str(status)] = _error(description)
    op["responses"] = responses
    return op


def _has_required(body: type) -> bool:
    fields = msgspec.structs.fields(body)
    return any(f.required for f in fields)


@cache
def _components(types: tuple[type, ...]) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(types, ref_template=REF)
    return components


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes``."""
    routes = list(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    shapes = {r.body for r in routes if r.body} | {r.answer for r in routes if r.answer}
    schemas = {
        "Error": ERROR_SCHEMA,
        **_components(tuple(sorted(shapes, key=lambda t: t.__name__))),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "quote2cash hub API",
            "version": getattr(quote2cash, "__version__", "0"),
            "description": (
                "Webhooks in, read views and operator decisions under /v1. Every /v1 route "
                "but this document needs `Authorization: Bearer <token>` (an operator's API "
                'token, `q2c tokens create`). Errors are `{"error": {"code", "message"}}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"}
            },
        },
    }
