"""Systems: health (paused, windows, deals waiting), breaker, rate-limit use; pause, resume and
maintenance-window forms for operators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web
from sqlalchemy import select

from quote2cash.console import decide
from quote2cash.console.context import console_of
from quote2cash.console.render import page, redirect
from quote2cash.console.session import SIGNED_IN
from quote2cash.engine.control import ControlError, system_status
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import failures

KNOWN_SYSTEMS: Final = ("crm", "billing", "erp")
MAX_REASON: Final = 500
RECENT: Final = timedelta(minutes=15)


def recent_failures(runtime: Runtime, since: datetime) -> dict[str, dict[str, Any]]:
    """Per system: how many calls failed since ``since``, the last time and error."""
    out: dict[str, dict[str, Any]] = {}
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(failures.c.system, failures.c.at, failures.c.error)
            .where(failures.c.at >= since, failures.c.system.is_not(None))
            .order_by(failures.c.at)
        ).all()
    for system, at, error in rows:
        entry = out.setdefault(str(system), {"count": 0})
        entry.update(count=entry["count"] + 1, last_at=at, last_error=error[:300])
    return out


def read_systems(runtime: Runtime) -> list[dict[str, Any]]:
    """Every known system with its pause, windows, waiting deals, recent failures, breaker and
    rate use (the breaker and rate figures are this process's gates)."""
    gates = runtime.gates
    now = runtime.clock.now()
    stored = {str(entry["system"]): entry for entry in system_status(runtime)}
    failed = recent_failures(runtime, now - RECENT)
    out = []
    for name in sorted(set(KNOWN_SYSTEMS) | set(stored) | set(failed)):
        entry: dict[str, Any] = dict(
            stored.get(name)
            or {"system": name, "paused": False, "reason": None, "changed_by": None, "windows": []}
        )
        limits = gates.limits_for(name)
        breaker = gates.breaker(name)
        entry["breaker"] = breaker.state(now)
        entry["breaker_threshold"] = limits.breaker_threshold
        bucket = getattr(gates, "_buckets", {}).get(name)
        entry["rate"] = limits.rate
        entry["burst"] = limits.burst
        entry["rate_used"] = (
            None if bucket is None else max(0.0, (limits.burst - bucket.tokens) / limits.burst)
        )
        entry["max_concurrency"] = limits.max_concurrency
        entry.setdefault("held_subjects", 0)
        entry["recent_failures"] = failed.get(name)
        out.append(entry)
    return out


def _system(request: web.Request) -> str:
    name = request.match_info["system"]
    if name not in KNOWN_SYSTEMS:
        raise ControlError(f"system {name!r} is unknown; expected one of {list(KNOWN_SYSTEMS)}")
    return name


async def _reason(request: web.Request) -> str:
    reason = str((await request.post()).get("reason", "")).strip()
    if not reason or len(reason) > MAX_REASON:
        raise ControlError(f"field 'reason' must be 1 to {MAX_REASON} characters")
    return reason


def _when(raw: object, field: str) -> datetime:
    text = str(raw or "").strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ControlError(
            f"field {field!r} is {text!r}; expected a time like 2026-12-06T22:00 (UTC)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def status(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    rows = await console.store(lambda: read_systems(console.runtime))
    return page(
        request,
        "systems.html",
        systems=rows,
        may_act=request[SIGNED_IN].operator.holds("operator"),
    )


async def pause(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    name, reason = _system(request), await _reason(request)
    operator = request[SIGNED_IN].operator
    await console.store(lambda: decide.pause(console.runtime, name, operator, reason))
    return redirect("/console/systems")


async def resume(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    name, reason = _system(request), await _reason(request)
    operator = request[SIGNED_IN].operator
    await console.store(lambda: decide.resume(console.runtime, name, operator, reason))
    return redirect("/console/systems")


async def window(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    name, reason = _system(request), await _reason(request)
    form = await request.post()
    starts, ends = _when(form.get("starts"), "starts"), _when(form.get("ends"), "ends")
    operator = request[SIGNED_IN].operator
    await console.store(
        lambda: decide.window(console.runtime, name, starts, ends, operator, reason)
    )
    return redirect("/console/systems")
