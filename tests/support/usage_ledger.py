"""A TEST DOUBLE of the ``UsageLedger`` protocol (usage/records.py), in memory.

Posting, explain and usage reconciliation are tested against it until usage intake's real
ledger (SQL, deduplicated against all history) replaces it in the integration; it keeps only
what the protocol promises: records per aggregate, aggregates per subscription meter and
billing period, a new version whenever a batch adds to an aggregate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from quote2cash.usage.records import AcceptedRecord, UsageAggregate


@dataclass
class MemoryUsageLedger:
    """Accepted records by aggregate; ``periods`` lists each subscription's billing periods."""

    periods: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    _records: dict[str, list[AcceptedRecord]] = field(default_factory=dict)
    _aggregates: dict[str, UsageAggregate] = field(default_factory=dict)
    _batches: int = 0

    def period_of(self, subscription: str, at: datetime) -> tuple[datetime, datetime]:
        for start, end in self.periods[subscription]:
            if start <= at < end:
                return start, end
        raise ValueError(f"{subscription}: no billing period holds {at.isoformat()}")

    def accept(
        self, subscription: str, meter: str, usage: Sequence[tuple[str, datetime]], **more: Any
    ) -> str:
        """One accepted batch of ``(quantity, timestamp)`` records; returns its batch id
        (``prefix`` starts the aggregate ids, ``agg`` unless told)."""
        self._batches += 1
        batch = f"batch-{self._batches}"
        for n, (quantity, at) in enumerate(usage, 1):
            record = AcceptedRecord(
                source="test",
                record_id=f"{batch}-{n}",
                batch_id=batch,
                subscription=subscription,
                meter=meter,
                quantity=Decimal(quantity),
                unit=more.get("unit", "call"),
                timestamp=at,
            )
            start, end = self.period_of(subscription, at)
            aggregate_id = f"{more.get('prefix', 'agg')}-{subscription}-{meter}-{start:%Y%m%d}"
            self._records.setdefault(aggregate_id, []).append(record)
            held = self._aggregates.get(aggregate_id)
            if held is None:
                self._aggregates[aggregate_id] = UsageAggregate(
                    aggregate_id=aggregate_id,
                    subscription=subscription,
                    meter=meter,
                    period_start=start,
                    period_end=end,
                    quantity=record.quantity,
                    unit=record.unit,
                    record_count=1,
                    batch_ids=(batch,),
                )
                continue
            new_batch = batch not in held.batch_ids
            self._aggregates[aggregate_id] = replace(
                held,
                quantity=held.quantity + record.quantity,
                record_count=held.record_count + 1,
                batch_ids=(*held.batch_ids, batch) if new_batch else held.batch_ids,
                version=held.version + 1 if new_batch else held.version,
            )
        return batch

    def amend(self, record_id: str, quantity: str) -> str:
        """A correction of one record (same id, new quantity) in a batch of its own; returns the
        batch id. Its aggregate gets a new version with the difference."""
        self._batches += 1
        batch = f"batch-{self._batches}"
        for aggregate_id, records in self._records.items():
            for n, held in enumerate(records):
                if held.record_id != record_id:
                    continue
                new = replace(
                    held, quantity=Decimal(quantity), batch_id=batch, revision=held.revision + 1
                )
                records[n] = new
                aggregate = self._aggregates[aggregate_id]
                self._aggregates[aggregate_id] = replace(
                    aggregate,
                    quantity=aggregate.quantity - held.quantity + new.quantity,
                    batch_ids=(*aggregate.batch_ids, batch),
                    version=aggregate.version + 1,
                )
                return batch
        raise KeyError(record_id)

    # --- the protocol ----------------------------------------------------------------------

    def records_of(self, aggregate_id: str) -> Iterator[AcceptedRecord]:
        yield from self._records.get(aggregate_id, [])

    def pending_aggregates(self) -> Sequence[UsageAggregate]:
        """The newest version of every aggregate (posting skips versions it recorded)."""
        return list(self._aggregates.values())

    def ingested_total(self, subscription: str, meter: str, period_start: datetime) -> Decimal:
        return sum(
            (
                a.quantity
                for a in self._aggregates.values()
                if (a.subscription, a.meter, a.period_start) == (subscription, meter, period_start)
            ),
            Decimal(0),
        )
