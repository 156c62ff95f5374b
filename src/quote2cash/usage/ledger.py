"""The usage ledger as posting, explain and reconciliation see it (``UsageLedger``).

Accepted records live in the batches' Parquet ledger files (named by committed receipts only);
aggregates live in the store, one row per version. An aggregate's records are those of batches
up to the one that last changed that version, each record at its latest revision as of then.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update

from quote2cash.store.schema import usage_aggregates, usage_batches
from quote2cash.usage.records import AcceptedRecord, UsageAggregate, UsageLedger
from quote2cash.usage.validation import new_connection


class UnknownAggregate(LookupError):
    """No usage aggregate with that id."""


def _aggregate(row: Any) -> UsageAggregate:
    return UsageAggregate(
        aggregate_id=str(row.aggregate_id),
        subscription=str(row.subscription),
        meter=str(row.meter),
        period_start=row.period_start,
        period_end=row.period_end,
        quantity=Decimal(row.quantity),
        unit=str(row.unit),
        record_count=int(row.record_count),
        batch_ids=tuple(json.loads(row.batch_ids)),
        version=int(row.version),
    )


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a time, got {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class SqlUsageLedger:
    """``UsageLedger`` over the store's aggregates and the ledger's Parquet files."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        self.engine = engine
        self.ledger_dir = folder / "ledger"

    def aggregate(self, aggregate_id: str) -> UsageAggregate:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(usage_aggregates).where(usage_aggregates.c.aggregate_id == aggregate_id)
            ).one_or_none()
        if row is None:
            raise UnknownAggregate(f"usage aggregate {aggregate_id!r}: no such aggregate")
        return _aggregate(row)

    def records_of(self, aggregate_id: str) -> Iterator[AcceptedRecord]:
        """The records an aggregate was made from, in acceptance order."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(usage_aggregates).where(usage_aggregates.c.aggregate_id == aggregate_id)
            ).one_or_none()
            if row is None:
                raise UnknownAggregate(f"usage aggregate {aggregate_id!r}: no such aggregate")
            files = [
                (str(self.ledger_dir / r.ledger_file), str(r.batch_id))
                for r in conn.execute(
                    select(usage_batches.c.ledger_file, usage_batches.c.batch_id)
                    .where(usage_batches.c.seq <= row.last_batch_seq)
                    .where(usage_batches.c.ledger_file.is_not(None))
                    .order_by(usage_batches.c.seq)
                )
            ]
        if not files:
            return iter(())
        paths = [f for f, _ in files]
        con = new_connection()
        try:
            rows = con.sql(
                "SELECT * FROM (SELECT l.*, list_position($files, l.filename) AS pos, "
                "row_number() OVER (PARTITION BY l.key ORDER BY list_position($files, l.filename) "
                "DESC) AS latest FROM read_parquet($files, filename = true) l) "
                "WHERE latest = 1 AND subscription = $sub AND meter = $meter "
                "AND period_start = $start ORDER BY pos, line",
                params={
                    "files": paths,
                    "sub": row.subscription,
                    "meter": row.meter,
                    "start": row.period_start.astimezone(UTC).replace(tzinfo=None),
                },
            ).fetchall()
            columns = [
                d[0]
                for d in con.sql(
                    "SELECT * FROM read_parquet($files, filename = true) LIMIT 0",
                    params={"files": paths[:1]},
                ).description
            ]
        finally:
            con.close()
        return (self._record(dict(zip([*columns, "pos", "latest"], r, strict=False))) for r in rows)

    @staticmethod
    def _record(r: dict[str, Any]) -> AcceptedRecord:
        props = json.loads(r["properties"]) if r.get("properties") else {}
        return AcceptedRecord(
            source=str(r["source"]),
            record_id=str(r["record_id"]),
            batch_id=str(r["batch_id"]),
            subscription=str(r["subscription"]),
            meter=str(r["meter"]),
            quantity=Decimal(r["quantity"]).normalize() if r["quantity"] else Decimal(0),
            unit=str(r["unit"]),
            timestamp=_utc(r["timestamp"]),
            revision=int(r["revision"]),
            properties=props if isinstance(props, dict) else {},
        )

    def pending_aggregates(self) -> Sequence[UsageAggregate]:
        """Aggregate versions not yet handed to posting, oldest period first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(usage_aggregates)
                .where(usage_aggregates.c.handed_at.is_(None))
                .order_by(
                    usage_aggregates.c.subscription,
                    usage_aggregates.c.period_start,
                    usage_aggregates.c.meter,
                )
            )
            return [_aggregate(r) for r in rows]

    def mark_handed(self, aggregate_ids: Sequence[str], at: datetime) -> int:
        """Freeze these versions: later records for their period make a new version."""
        if not aggregate_ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                update(usage_aggregates)
                .where(usage_aggregates.c.aggregate_id.in_(list(aggregate_ids)))
                .where(usage_aggregates.c.handed_at.is_(None))
                .values(handed_at=at)
            )
            return int(result.rowcount or 0)

    def hand_over(self, aggregate_ids: Sequence[str], at: datetime) -> Sequence[UsageAggregate]:
        """Freeze these versions for posting and return them as frozen (unknown ids left out);
        a version handed over before comes back as it was frozen."""
        self.mark_handed(aggregate_ids, at)
        handed: list[UsageAggregate] = []
        for aggregate_id in aggregate_ids:
            try:
                handed.append(self.aggregate(aggregate_id))
            except UnknownAggregate:
                continue
        return handed

    def ingested_total(self, subscription: str, meter: str, period_start: datetime) -> Decimal:
        """Sum of accepted quantity for one subscription meter and period (newest version)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(usage_aggregates.c.quantity)
                .where(usage_aggregates.c.subscription == subscription)
                .where(usage_aggregates.c.meter == meter)
                .where(usage_aggregates.c.period_start == period_start)
                .order_by(usage_aggregates.c.version.desc())
                .limit(1)
            ).one_or_none()
        return Decimal(row.quantity) if row is not None else Decimal(0)

    def aggregates(self, subscription: str | None = None) -> list[UsageAggregate]:
        """Every aggregate version (a subscription's only, when given)."""
        query = select(usage_aggregates).order_by(
            usage_aggregates.c.subscription,
            usage_aggregates.c.period_start,
            usage_aggregates.c.meter,
            usage_aggregates.c.version,
        )
        if subscription:
            query = query.where(usage_aggregates.c.subscription == subscription)
        with self.engine.connect() as conn:
            return [_aggregate(r) for r in conn.execute(query)]

    def count_batches(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(usage_batches)).scalar_one())


def as_usage_ledger(ledger: SqlUsageLedger) -> UsageLedger:
    """The store's ledger as posting sees it (mypy checks it implements the protocol)."""
    return ledger
