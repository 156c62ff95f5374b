"""Time-ordered ids: version 7 UUIDs ordered by the clock, so indexes append at one edge."""

from __future__ import annotations

import time
import uuid

from quote2cash.engine.events import new_event
from quote2cash.engine.ids import new_id, uuid7


def test_a_version_7_rfc_uuid_carrying_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after
    assert uuid.UUID(str(value)) == value


def test_ids_minted_in_later_milliseconds_sort_after_earlier_ones_as_strings() -> None:
    earlier = [new_id() for _ in range(50)]
    time.sleep(0.002)
    later = [new_id() for _ in range(50)]
    assert max(earlier) < min(later)


def test_ids_are_unique_and_random_within_a_millisecond() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    # the 74 random bits differ: ids of one millisecond are not a counter
    tails = {i[-12:] for i in ids}
    assert len(tails) == len(ids)


def test_new_events_get_time_ordered_ids_and_correlation_ids() -> None:
    first = new_event("crm.deal.won", "deal:1")
    time.sleep(0.002)
    second = new_event("crm.deal.won", "deal:2")
    for event in (first, second):
        assert uuid.UUID(event.id).version == 7
        assert uuid.UUID(event.correlation_id).version == 7
    assert first.id < second.id
    assert first.correlation_id < second.correlation_id
    # given ids are kept as they are
    assert new_event("x.y.z", "s", id="evt_1", correlation_id="c-1").id == "evt_1"
