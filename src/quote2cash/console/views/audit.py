"""The audit log, newest first in pages, and a verify of the whole chain on request."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from sqlalchemy import select

from quote2cash.console.context import console_of
from quote2cash.console.render import page
from quote2cash.engine.audit import Verification
from quote2cash.engine.checkpoints import verify_store
from quote2cash.engine.control import ControlError
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import audit_log

PAGE: Final = 50


def read_entries(runtime: Runtime, before: int | None) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(PAGE)
    if before is not None:
        query = query.where(audit_log.c.id < before)
    with runtime.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _before(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ControlError(f"query parameter 'before' is {raw!r}; expected an entry number")
    return int(raw)


async def _show(request: web.Request, verification: Verification | None) -> web.Response:
    console = console_of(request)
    before = _before(request.query.get("before"))
    rows = await console.store(lambda: read_entries(console.runtime, before))
    older = rows[-1]["id"] if len(rows) == PAGE else None
    return page(request, "audit.html", entries=rows, older=older, verification=verification)


async def entries(request: web.Request) -> web.StreamResponse:
    return await _show(request, None)


async def verify(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    result = await console.store(lambda: verify_store(console.runtime))
    return await _show(request, result)
