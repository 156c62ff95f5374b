"""Append: committed before it returns, sequenced per subject, idempotent on (source, id)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from quote2cash.engine.events import Event, EventValidationError, new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.store.db import open_engine
from quote2cash.store.schema import events


def test_sequences_are_per_subject_and_gapless(runtime: Runtime) -> None:
    batch = [new_event("crm.opportunity.closed_won", f"s{i % 3}", {"i": i}) for i in range(9)]
    receipts = runtime.log.append_many(batch)
    assert [r.sequence for r in receipts] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    more = runtime.log.append(new_event("crm.amendment.requested", "s1"))
    assert more.sequence == 4 and not more.duplicate


def test_redelivered_event_is_accepted_once(runtime: Runtime) -> None:
    ev = new_event("billing.invoice.finalized", "sub_1", {"amount": "10.00"}, source="stripe")
    first = runtime.log.append(ev)
    again = runtime.log.append(ev)
    in_batch = runtime.log.append_many([ev, ev])
    assert not first.duplicate
    assert again.duplicate and again.sequence == first.sequence
    assert all(r.duplicate for r in in_batch)
    twin = runtime.log.append_many(
        [
            new_event("a.b.c", "x", id="dup", source="s"),
            new_event("a.b.c", "x", id="dup", source="s"),
        ]
    )
    assert [r.duplicate for r in twin] == [False, True]
    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 2


def test_committed_before_return_visible_to_another_connection(
    runtime: Runtime, db_url: str
) -> None:
    runtime.log.append(new_event("crm.opportunity.closed_won", "deal-9", {"amount": "12.50"}))
    other = open_engine(db_url)
    with other.connect() as conn:
        row = conn.execute(select(events.c.subject, events.c.data)).one()
    other.dispose()
    assert row.subject == "deal-9"
    assert '"12.50"' in row.data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "closedwon"}, "type"),
        ({"subject": ""}, "subject"),
        ({"correlation_id": " "}, "correlation_id"),
        ({"time": datetime(2026, 1, 1)}, "time"),
    ],
)
def test_bad_envelopes_are_refused_with_the_field_named(
    runtime: Runtime, change: dict[str, object], field: str
) -> None:
    good = new_event("crm.opportunity.closed_won", "deal-1", id="evt-1")
    bad = Event(**{**{f: getattr(good, f) for f in good.__struct_fields__}, **change})
    with pytest.raises(EventValidationError) as info:
        runtime.log.append(bad)
    assert f"'{field}'" in str(info.value) and "evt-1" in str(info.value)
