"""State a ``q2c serve`` process's scheduled job produced, kept in the store by name (table
``hub_state``), so every serve process of a deployment answers the same: ``reconciliation`` (the
last kept report as JSON) and ``reconciliation.run`` (when the last run ended, and how)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, select

from quote2cash.engine.dispatch_sql import parse_time
from quote2cash.store.schema import hub_state
from quote2cash.store.upsert import upsert_row

RECONCILIATION: Final = "reconciliation"
RECONCILIATION_RUN: Final = "reconciliation.run"
"""The last scheduled run's end and outcome, kept or failed: the next leader waits from it."""


@dataclass(frozen=True)
class KeptState:
    data: dict[str, Any]
    recorded_at: datetime
    recorded_by: str
    """The serve process (``host:pid:tag``) that kept it."""


def keep_state(engine: Engine, name: str, data: dict[str, Any], *, at: datetime, by: str) -> None:
    """Replace the state ``name`` (one row, one commit)."""
    values = {"name": name, "data": json.dumps(data), "recorded_at": at, "recorded_by": by[:120]}
    with engine.begin() as conn:
        upsert_row(conn, hub_state, values, key="name")


def kept_state(engine: Engine, name: str) -> KeptState | None:
    """The state ``name`` as last kept, or None."""
    query = select(hub_state.c.data, hub_state.c.recorded_at, hub_state.c.recorded_by).where(
        hub_state.c.name == name
    )
    with engine.connect() as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        return None
    return KeptState(json.loads(row.data), parse_time(row.recorded_at), row.recorded_by)
