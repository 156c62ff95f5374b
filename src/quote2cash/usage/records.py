"""The shapes that pass between usage intake (ledger, aggregation) and posting to billing.

Intake owns where accepted records live; posting sees them only through these types and the
``UsageLedger`` protocol, so the two can change apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """One usage record that passed validation and deduplication (the latest revision of its id)."""

    source: str
    record_id: str
    batch_id: str
    subscription: str
    meter: str
    quantity: Decimal
    unit: str
    timestamp: datetime
    revision: int = 1
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    """Usage of one subscription's meter in one billing period, as posted to billing.

    ``aggregate_id`` is stable for (subscription, meter, period start, version): posting it twice
    is one posting (it is the billing idempotency key); a late record makes a new version whose
    delta is posted by the late-usage policy.
    """

    aggregate_id: str
    subscription: str
    meter: str
    period_start: datetime
    period_end: datetime
    quantity: Decimal
    unit: str
    record_count: int
    batch_ids: tuple[str, ...]
    version: int = 1


class UsageLedger(Protocol):
    """Where accepted records are kept; read by posting, explain and reconciliation."""

    def records_of(self, aggregate_id: str) -> Iterator[AcceptedRecord]:
        """The records an aggregate was made from, in acceptance order."""
        ...

    def pending_aggregates(self) -> Sequence[UsageAggregate]:
        """Aggregates (or new versions) not yet handed to posting."""
        ...

    def hand_over(self, aggregate_ids: Sequence[str], at: datetime) -> Sequence[UsageAggregate]:
        """Freeze these versions for posting and return them as frozen (unknown ids left out):
        records that arrive later for their periods make a new version. Idempotent: a version
        handed over before is returned as it was frozen, so a re-run posts the same quantity."""
        ...

    def ingested_total(self, subscription: str, meter: str, period_start: datetime) -> Decimal:
        """Sum of accepted quantity for one subscription meter and period, for reconciliation."""
        ...
