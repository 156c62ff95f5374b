"""Step and emit ids are computed without ``uuid.uuid5`` on the hot path: they must stay exactly
the ids every earlier release derived, or a re-run after an upgrade repeats its side effects."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from quote2cash.engine.context import STEP_NAMESPACE, idempotency_key, step_uuid
from quote2cash.engine.events import new_event


@given(st.text(max_size=300))
def test_step_uuid_is_uuid5_of_the_step_namespace(name: str) -> None:
    assert step_uuid(name) == str(uuid.uuid5(STEP_NAMESPACE, name))


def test_a_known_step_key_never_changes() -> None:
    event = new_event("crm.opportunity.closed_won", "contract-1", {}, id="evt-1")
    expected = uuid.uuid5(STEP_NAMESPACE, f"{event.source}\x1fevt-1\x1fbilling.create_customer")
    assert idempotency_key(event, "billing.create_customer") == str(expected)
    assert uuid.UUID(idempotency_key(event, "billing.create_customer")).version == 5
