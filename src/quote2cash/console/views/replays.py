"""Replay requests: a dry-run preview of the exact set a filter selects, the request, and the
second person's approve or reject."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from quote2cash.console import decide
from quote2cash.console.context import console_of
from quote2cash.console.render import page, redirect
from quote2cash.console.session import SIGNED_IN
from quote2cash.engine.control import ControlError
from quote2cash.engine.exceptions import preview_bulk_replay
from quote2cash.engine.replay import Selector, list_requests

PREVIEW_LIMIT: Final = 500


def _time(raw: str, field: str) -> datetime | None:
    if not raw.strip():
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ControlError(
            f"field {field!r} is {raw!r}; expected a time like 2026-12-06T07:00 (UTC)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _selector(form: object) -> Selector:
    assert hasattr(form, "getall") and hasattr(form, "get")
    ids = tuple(str(v).strip() for v in form.getall("event_id", []) if str(v).strip())
    return Selector(
        event_ids=ids,
        correlation_id=str(form.get("correlation_id", "")).strip() or None,
        since=_time(str(form.get("since", "")), "since"),
        until=_time(str(form.get("until", "")), "until"),
        include_processed=form.get("include_processed") == "on",
    )


async def list_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    operator = request[SIGNED_IN].operator
    found = await console.store(lambda: list_requests(console.runtime))
    found.reverse()
    return page(
        request,
        "replays.html",
        requests=found,
        deciding={r.id for r in found if decide.may_decide(operator, r)},
        may_request=operator.holds("operator"),
    )


async def preview(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    request[SIGNED_IN].operator.require("operator", "preview a bulk replay")
    form = await request.post()
    selector = _selector(form)
    if not (selector.event_ids or selector.correlation_id or selector.since or selector.until):
        raise ControlError("a bulk replay needs a correlation id or a time range (since/until)")
    rows = await console.store(lambda: preview_bulk_replay(console.runtime, selector))
    return page(
        request,
        "replay_preview.html",
        selector=selector,
        rows=rows[:PREVIEW_LIMIT],
        too_many=len(rows) > PREVIEW_LIMIT,
    )


async def request(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    operator = request[SIGNED_IN].operator
    form = await request.post()
    selector = _selector(form)
    reason = str(form.get("reason", "")).strip()
    if not reason:
        raise ControlError("field 'reason' is empty; say why these events should run again")
    made = await console.store(lambda: decide.request(console.runtime, selector, operator, reason))
    return redirect(f"/console/replays#request-{made.id}")


def _request_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ControlError(f"replay request id {raw!r} is not a number")
    return int(raw)


async def approve(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    operator = request[SIGNED_IN].operator
    rid = _request_id(request)
    note = str((await request.post()).get("note", "")).strip()
    await console.store(lambda: decide.approve(console.runtime, rid, operator, note))
    return redirect(f"/console/replays#request-{rid}")


async def reject(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    operator = request[SIGNED_IN].operator
    rid = _request_id(request)
    note = str((await request.post()).get("note", "")).strip()
    if not note:
        raise ControlError("field 'note' is empty; a rejection says why")
    await console.store(lambda: decide.reject(console.runtime, rid, operator, note))
    return redirect(f"/console/replays#request-{rid}")
