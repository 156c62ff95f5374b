"""Read-only trail of what the hub logged and did: events that mention an object and the steps
recorded for them, for answers given from the hub's own state (never an external system)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from quote2cash.engine.events import decode_data
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import events, steps


@dataclass(frozen=True)
class Logged:
    """A logged event's place in the log, subject, time and data."""

    pos: int
    subject: str
    time: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class StepResult:
    """A completed step of a logged event, with its raw (JSON) result."""

    event_pos: int
    event_time: datetime
    name: str
    result: str


def events_mentioning(runtime: Runtime, type_prefixes: Sequence[str], text: str) -> list[Logged]:
    """Events of types starting with one of ``type_prefixes`` whose data mentions ``text`` as a
    JSON string, oldest first."""
    with runtime.engine.connect() as conn:
        found = conn.execute(
            select(events.c.pos, events.c.subject, events.c.time, events.c.data)
            .where(
                or_(*(events.c.type.startswith(p) for p in type_prefixes)),
                events.c.data.contains(f'"{text}"', autoescape=True),
            )
            .order_by(events.c.pos)
        ).all()
    return [Logged(pos, subject, time, decode_data(raw)) for pos, subject, time, raw in found]


def event_data_with_step_result(
    runtime: Runtime, step_names: Sequence[str], text: str
) -> dict[str, Any] | None:
    """The data of an event one of whose ``step_names`` steps returned ``text`` (a JSON string)."""
    with runtime.engine.connect() as conn:
        found = conn.execute(
            select(events.c.data)
            .join(steps, steps.c.event_pos == events.c.pos)
            .where(
                steps.c.name.in_(list(step_names)),
                steps.c.result.contains(f'"{text}"', autoescape=True),
            )
            .limit(1)
        ).scalar_one_or_none()
    return None if found is None else decode_data(found)


def steps_of(runtime: Runtime, positions: Sequence[int]) -> list[tuple[str, str]]:
    """(name, raw result) of the completed steps of the events at ``positions``, in order."""
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(steps.c.name, steps.c.result)
            .where(steps.c.event_pos.in_(list(positions)))
            .order_by(steps.c.completed_at)
        ).all()
    return [(str(name), str(result)) for name, result in rows]


def latest_step_result(
    runtime: Runtime, event_type: str, step_name: str, text: str
) -> StepResult | None:
    """The newest ``step_name`` step of an ``event_type`` event whose result mentions ``text``."""
    with runtime.engine.connect() as conn:
        found = conn.execute(
            select(events.c.pos, events.c.time, steps.c.result)
            .join(steps, steps.c.event_pos == events.c.pos)
            .where(
                events.c.type == event_type,
                steps.c.name == step_name,
                steps.c.result.contains(f'"{text}"', autoescape=True),
            )
            .order_by(events.c.pos.desc())
            .limit(1)
        ).first()
    if found is None:
        return None
    return StepResult(int(found.pos), found.time, step_name, str(found.result))


def has_step(runtime: Runtime, event_pos: int, step_name: str) -> bool:
    """Whether the event at ``event_pos`` completed a step named ``step_name``."""
    with runtime.engine.connect() as conn:
        return (
            conn.execute(
                select(steps.c.name).where(
                    steps.c.event_pos == event_pos, steps.c.name == step_name
                )
            ).first()
            is not None
        )


def recorded_result(runtime: Runtime, source: str, event_id: str, step_name: str) -> Any:
    """What the ``step_name`` step of the event ``(source, event_id)`` returned (decoded), or
    None if that step never completed: a later event uses what an earlier one decided."""
    with runtime.engine.connect() as conn:
        found = conn.execute(
            select(steps.c.result)
            .join(events, steps.c.event_pos == events.c.pos)
            .where(
                events.c.source == source,
                events.c.event_id == event_id,
                steps.c.name == step_name,
            )
            .limit(1)
        ).scalar_one_or_none()
    return None if found is None else decode_data(found)
