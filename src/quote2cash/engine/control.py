"""Operator controls with an audit trail: pausing target systems and maintenance windows.

Every change is decided by an authenticated operator holding the ``operator`` role (accounts
and roles live in ``quote2cash.identity``)."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import func, insert, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.store.schema import maintenance_windows, subjects, systems


class ControlError(ValueError):
    """A refused operator action; the message says what and why."""


def pause_system(
    runtime: Runtime, system: str, *, by: Operator, reason: str, wait: bool = True
) -> float:
    """Hold all work for ``system`` until resumed; other systems keep flowing.

    Returns once every hub process's gates have re-read it (``wait``): from then on no call to
    ``system`` starts. Returns that bound in seconds."""
    by.require("operator", f"pause {system}")
    _set_paused(runtime, system, True, actor=by.name, reason=reason)
    committed = time.monotonic()
    bound = runtime.gates.max_age
    if wait:
        time.sleep(max(0.0, committed + bound - time.monotonic()))
    return bound


def resume_system(runtime: Runtime, system: str, *, by: Operator, reason: str = "resumed") -> None:
    """End a manual pause and any maintenance window in force now; held work drains in order."""
    by.require("operator", f"resume {system}")
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        conn.execute(
            update(maintenance_windows)
            .where(
                maintenance_windows.c.system == system,
                maintenance_windows.c.starts_at <= now,
                maintenance_windows.c.ends_at > now,
            )
            .values(ends_at=now)
        )
    # Ends the window first, so the gates reloaded here no longer see it in force.
    _set_paused(runtime, system, False, actor=by.name, reason=reason)
    _release_held(runtime, system)


def _set_paused(runtime: Runtime, system: str, paused: bool, *, actor: str, reason: str) -> None:
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        row = conn.execute(select(systems.c.name).where(systems.c.name == system)).first()
        values = {"paused": paused, "reason": reason, "changed_by": actor, "changed_at": now}
        if row is None:
            conn.execute(insert(systems).values(name=system, **values))
        else:
            conn.execute(update(systems).where(systems.c.name == system).values(**values))
        append_audit(
            conn,
            [
                AuditEntry(
                    actor,
                    "system.paused" if paused else "system.resumed",
                    system,
                    details={"reason": reason},
                )
            ],
            now,
        )
    runtime.gates.refresh(runtime.engine, force=True)


def schedule_window(
    runtime: Runtime,
    system: str,
    starts_at: datetime,
    ends_at: datetime,
    *,
    by: Operator,
    reason: str,
) -> int:
    """A maintenance window: work for ``system`` is held while it is in force."""
    by.require("operator", f"schedule a maintenance window for {system}")
    actor = by.name
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ControlError("maintenance window times must be aware UTC times")
    if ends_at <= starts_at:
        raise ControlError(
            f"maintenance window for {system}: ends_at {ends_at.isoformat()} must be after "
            f"starts_at {starts_at.isoformat()}"
        )
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        wid = conn.execute(
            insert(maintenance_windows)
            .values(
                system=system, starts_at=starts_at, ends_at=ends_at, reason=reason, created_by=actor
            )
            .returning(maintenance_windows.c.id)
        ).scalar_one()
        append_audit(
            conn,
            [
                AuditEntry(
                    actor,
                    "system.window_scheduled",
                    system,
                    details={
                        "window": wid,
                        "starts_at": starts_at.isoformat(),
                        "ends_at": ends_at.isoformat(),
                        "reason": reason,
                    },
                )
            ],
            now,
        )
    runtime.gates.refresh(runtime.engine, force=True)
    return int(wid)


def _release_held(runtime: Runtime, system: str) -> None:
    """Subjects waiting on ``system`` become ready at once instead of at their next poll."""
    with runtime.engine.begin() as conn:
        conn.execute(update(subjects).where(subjects.c.waiting_on == system).values(ready_at=None))


def system_status(runtime: Runtime) -> list[dict[str, object]]:
    """Each known system: paused or not, why, and the windows in force or scheduled."""
    now = runtime.clock.now()
    out: dict[str, dict[str, object]] = {}
    with runtime.engine.connect() as conn:
        for row in conn.execute(select(systems).order_by(systems.c.name)):
            out[row.name] = {
                "system": row.name,
                "paused": row.paused,
                "reason": row.reason,
                "changed_by": row.changed_by,
                "windows": [],
            }
        for w in conn.execute(
            select(maintenance_windows)
            .where(maintenance_windows.c.ends_at > now)
            .order_by(maintenance_windows.c.starts_at)
        ):
            entry = out.setdefault(
                w.system,
                {
                    "system": w.system,
                    "paused": False,
                    "reason": None,
                    "changed_by": None,
                    "windows": [],
                },
            )
            windows = entry["windows"]
            assert isinstance(windows, list)
            windows.append(
                {
                    "id": w.id,
                    "starts_at": w.starts_at,
                    "ends_at": w.ends_at,
                    "reason": w.reason,
                    "in_force": w.starts_at <= now,
                }
            )
        for system, count in conn.execute(
            select(subjects.c.waiting_on, func.count())
            .where(subjects.c.waiting_on.is_not(None))
            .group_by(subjects.c.waiting_on)
        ):
            entry = out.setdefault(
                system,
                {
                    "system": system,
                    "paused": False,
                    "reason": None,
                    "changed_by": None,
                    "windows": [],
                },
            )
            entry["held_subjects"] = count
    return list(out.values())
