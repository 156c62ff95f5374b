"""A TEST DOUBLE of the ``UsageLedger`` protocol (usage/records.py), in memory.

Posting, explain and usage reconciliation are tested against it until usage intake's real
ledger (SQL, deduplicated against all history) replaces it in the integration; it keeps what
the protocol promises and intake's ledger does: one aggregate per subscription meter and
billing period, growing in place until it is handed over to posting; records for a handed
version make the next version (``<key>-v<n>``), whose quantity and batches are cumulative.
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
    touched: dict[str, list[str]] = field(default_factory=dict)
    """Per batch, the aggregate versions it made or changed (what intake's event names)."""
    _records: dict[str, list[AcceptedRecord]] = field(default_factory=dict)
    """Per period key, every record at its latest revision."""
    _versions: dict[str, list[UsageAggregate]] = field(default_factory=dict)
    _handed: set[str] = field(default_factory=set)
    _batches: int = 0

    def period_of(self, subscription: str, at: datetime) -> tuple[datetime, datetime]:
        for start, end in self.periods[subscription]:
            if start <= at < end:
                return start, end
        raise ValueError(f"{subscription}: no billing period holds {at.isoformat()}")

    def _new_batch(self) -> str:
        self._batches += 1
        batch = f"batch-{self._batches}"
        self.touched[batch] = []
        return batch

    def _add(self, key: str, batch: str, difference: Decimal, records: int, **made: Any) -> None:
        """Fold a batch's change into the period's newest version, or a successor if handed."""
        versions = self._versions.setdefault(key, [])
        newest = versions[-1] if versions else None
        if newest is None:
            made_now = UsageAggregate(
                aggregate_id=f"{key}-v1",
                quantity=difference,
                record_count=records,
                batch_ids=(batch,),
                **made,
            )
            versions.append(made_now)
        else:
            batches = tuple(dict.fromkeys((*newest.batch_ids, batch)))
            grown = replace(
                newest,
                quantity=newest.quantity + difference,
                record_count=newest.record_count + records,
                batch_ids=batches,
            )
            if newest.aggregate_id in self._handed:
                version = newest.version + 1
                grown = replace(grown, aggregate_id=f"{key}-v{version}", version=version)
                versions.append(grown)
            else:
                versions[-1] = grown
            made_now = grown
        if made_now.aggregate_id not in self.touched[batch]:
            self.touched[batch].append(made_now.aggregate_id)

    def accept(
        self, subscription: str, meter: str, usage: Sequence[tuple[str, datetime]], **more: Any
    ) -> str:
        """One accepted batch of ``(quantity, timestamp)`` records; returns its batch id
        (``prefix`` starts the aggregate ids, ``agg`` unless told)."""
        batch = self._new_batch()
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
            key = f"{more.get('prefix', 'agg')}-{subscription}-{meter}-{start:%Y%m%d}"
            self._records.setdefault(key, []).append(record)
            self._add(
                key,
                batch,
                record.quantity,
                1,
                subscription=subscription,
                meter=meter,
                period_start=start,
                period_end=end,
                unit=record.unit,
            )
        return batch

    def amend(self, record_id: str, quantity: str) -> str:
        """A correction of one record (same id, new quantity) in a batch of its own."""
        batch = self._new_batch()
        for key, records in self._records.items():
            for n, held in enumerate(records):
                if held.record_id != record_id:
                    continue
                new = replace(
                    held, quantity=Decimal(quantity), batch_id=batch, revision=held.revision + 1
                )
                records[n] = new
                self._add(key, batch, new.quantity - held.quantity, 0)
                return batch
        raise KeyError(record_id)

    def _key_of(self, aggregate_id: str) -> tuple[str, UsageAggregate] | None:
        for key, versions in self._versions.items():
            for version in versions:
                if version.aggregate_id == aggregate_id:
                    return key, version
        return None

    # --- the protocol ----------------------------------------------------------------------

    def records_of(self, aggregate_id: str) -> Iterator[AcceptedRecord]:
        """The period's records of the version's batches (latest revisions)."""
        found = self._key_of(aggregate_id)
        if found is None:
            raise LookupError(f"usage aggregate {aggregate_id!r}: no such aggregate")
        key, version = found
        return (r for r in self._records.get(key, []) if r.batch_id in version.batch_ids)

    def pending_aggregates(self) -> Sequence[UsageAggregate]:
        return [
            versions[-1]
            for versions in self._versions.values()
            if versions[-1].aggregate_id not in self._handed
        ]

    def hand_over(self, aggregate_ids: Sequence[str], at: datetime) -> Sequence[UsageAggregate]:
        frozen = []
        for aggregate_id in aggregate_ids:
            found = self._key_of(aggregate_id)
            if found is not None:
                self._handed.add(aggregate_id)
                frozen.append(found[1])
        return frozen

    def ingested_total(self, subscription: str, meter: str, period_start: datetime) -> Decimal:
        for versions in self._versions.values():
            newest = versions[-1]
            if (newest.subscription, newest.meter, newest.period_start) == (
                subscription,
                meter,
                period_start,
            ):
                return newest.quantity
        return Decimal(0)
