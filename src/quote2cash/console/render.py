"""Pages from the package's templates, every value HTML-escaped (jinja2 autoescape on)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import jinja2
from aiohttp import web

from quote2cash.console.session import CSRF_FIELD, SIGNED_IN

ENVIRONMENT: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("quote2cash.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


ENVIRONMENT.filters["when"] = _when
ENVIRONMENT.filters["pretty"] = _pretty


def page(request: web.Request, template: str, *, status: int = 200, **values: Any) -> web.Response:
    """Render ``template`` with the signed-in operator (if any) and its CSRF field name."""
    signed_in = request.get(SIGNED_IN)
    body = ENVIRONMENT.get_template(template).render(
        operator=signed_in.operator if signed_in else None,
        csrf=signed_in.csrf if signed_in else "",
        csrf_field=CSRF_FIELD,
        path=request.path,
        **values,
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
            ),
            "Referrer-Policy": "same-origin",
        },
    )


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs ``location``."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
