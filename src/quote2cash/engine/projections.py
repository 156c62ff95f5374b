"""Read models kept in step with the engine: updated in the same transaction as the step record
or the event completion that changes them, so a reader never sees one without the other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from quote2cash.engine.events import Event


class Projection(Protocol):
    """A read model the flows register (``Registry.add_projection``)."""

    def on_step(self, conn: Connection, event: Event, step: str, result: str) -> None:
        """A step of ``event`` was recorded with ``result`` (JSON) in ``conn``'s transaction."""

    def on_done(self, conn: Connection, events: Sequence[Event]) -> None:
        """``events`` were marked done in ``conn``'s transaction."""


def project_step(
    projections: Sequence[Projection], conn: Connection, event: Event, step: str, result: str
) -> None:
    for projection in projections:
        projection.on_step(conn, event, step, result)


def project_done(
    projections: Sequence[Projection], conn: Connection, events: Sequence[Event]
) -> None:
    if events:
        for projection in projections:
            projection.on_done(conn, events)
