"""The exception queue by recoverability, apart from the technical alerts; and its actions:
retry, correct-and-retry (the payload edited as JSON; the engine audits the diff), resolve."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from quote2cash.console import decide
from quote2cash.console.context import console_of
from quote2cash.console.render import page, redirect
from quote2cash.console.session import SIGNED_IN
from quote2cash.console.views.exceptions_read import RECOVERABILITY, read_queue
from quote2cash.engine.control import ControlError
from quote2cash.engine.events import decode_data
from quote2cash.engine.quarantine import discard_delivery
from quote2cash.engine.queries import find_event

MAX_REASON: Final = 1000


def _pos(request: web.Request) -> int:
    raw = request.match_info["pos"]
    if not raw.isdigit() or len(raw) > 18:
        raise ControlError(f"event position {raw!r} is not a number")
    return int(raw)


async def _reason(request: web.Request, *, required: bool) -> str:
    reason = str((await request.post()).get("reason", "")).strip()
    if (required and not reason) or len(reason) > MAX_REASON:
        raise ControlError(f"field 'reason' must be 1 to {MAX_REASON} characters")
    return reason


async def exceptions(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    queue = await console.store(lambda: read_queue(console.runtime))
    return page(
        request,
        "exceptions.html",
        queue=queue,
        titles=RECOVERABILITY,
        may_act=request[SIGNED_IN].operator.holds("operator"),
    )


async def retry(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    pos, operator = _pos(request), request[SIGNED_IN].operator
    await console.store(lambda: decide.retry(console.runtime, pos, operator))
    return redirect("/console/exceptions")


async def resolve(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    pos, operator = _pos(request), request[SIGNED_IN].operator
    reason = await _reason(request, required=True)
    await console.store(lambda: decide.resolve(console.runtime, pos, operator, reason))
    return redirect("/console/exceptions")


async def correction_form(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    pos = _pos(request)
    found = await console.store(lambda: find_event(console.runtime, str(pos)))
    if found is None or found["event"]["pos"] != pos:
        raise ControlError(f"no event at position {pos}")
    event = found["event"]
    data = json.dumps(decode_data(event["data"]), indent=2, sort_keys=True, ensure_ascii=False)
    return page(request, "correct.html", event=event, data=data, error=None)


async def correct(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    pos, operator = _pos(request), request[SIGNED_IN].operator
    form = await request.post()
    raw = str(form.get("data", ""))
    reason = await _reason(request, required=False)
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise ControlError(f"field 'data' is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("field 'data' must be a JSON object")
    made = await console.store(lambda: decide.correct(console.runtime, pos, data, operator, reason))
    if made is not None:
        return redirect(f"/console/replays#request-{made.id}")
    return redirect("/console/exceptions")


async def discard(request: web.Request) -> web.StreamResponse:
    """A quarantined delivery an operator decides not to take in, with the reason."""
    console = console_of(request)
    raw, operator = request.match_info["id"], request[SIGNED_IN].operator
    if not raw.isdigit() or len(raw) > 18:
        raise ControlError(f"quarantined delivery id {raw!r} is not a number")
    reason = await _reason(request, required=True)
    await console.store(
        lambda: discard_delivery(console.runtime, int(raw), by=operator, reason=reason)
    )
    return redirect("/console/exceptions#quarantine")
