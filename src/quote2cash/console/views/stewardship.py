"""Data steward tasks: accounts onboarding would not file alone, with the evidence of each
doubtful pair; an operator decides "same as" one of the offered customers or "a customer of its
own", and the account's parked deals resume."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from quote2cash.console.context import console_of
from quote2cash.console.render import page, redirect
from quote2cash.console.session import SIGNED_IN
from quote2cash.engine.control import ControlError
from quote2cash.engine.errors import ConflictError, DataError
from quote2cash.flows.customers import decide_steward_task
from quote2cash.masterdata import GoldenCustomers

MAX_NOTE: Final = 1000
_SYSTEM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _golden(request: web.Request) -> GoldenCustomers:
    golden = console_of(request).golden_customers()
    if golden is None:
        raise ControlError("no matching.yaml in the configuration: onboarding does not match")
    return golden


async def tasks(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    golden = _golden(request)
    open_tasks = await console.store(golden.tasks)
    return page(
        request,
        "stewardship.html",
        tasks=open_tasks,
        may_act=request[SIGNED_IN].operator.holds("operator"),
    )


async def decide(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    golden = _golden(request)
    system, local_id = request.match_info["system"], request.match_info["local_id"]
    if not system or set(system) - _SYSTEM_CHARS or not 0 < len(local_id) <= 255:
        raise ControlError(f"account {system}:{local_id[:40]!r} is not a system and record id")
    form = await request.post()
    decision = str(form.get("decision", ""))
    if decision not in ("same", "new"):
        raise ControlError("field 'decision' must be 'same' or 'new'")
    same_as = str(form.get("same_as", "")).strip() if decision == "same" else None
    if decision == "same" and not same_as:
        raise ControlError("field 'same_as' must name the customer the account is")
    note = str(form.get("note", "")).strip()
    if len(note) > MAX_NOTE:
        raise ControlError(f"field 'note' must be at most {MAX_NOTE} characters")
    operator = request[SIGNED_IN].operator

    def take() -> None:
        try:
            decide_steward_task(
                console.runtime,
                golden,
                system,
                local_id,
                same_as=same_as,
                by=operator,
                note=note or None,
            )
        except (DataError, ConflictError) as exc:
            raise ControlError(str(exc)) from None

    await console.store(take)
    return redirect("/console/customers")
