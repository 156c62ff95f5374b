"""The record of usage posted to billing: one row per aggregate version, written in the same
transaction as the step that posted it (an engine projection), so the hub never shows a posting
billing did not get, nor forgets one it did. Explain and usage reconciliation read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import Connection, Engine, and_, select

from quote2cash.store.db import read_connection
from quote2cash.store.schema import usage_postings
from quote2cash.store.upsert import insert_missing

if TYPE_CHECKING:
    from quote2cash.engine.events import Event

POSTING_STEPS = ("billing.post_usage ", "usage.refuse ")
"""Step name prefixes whose results are postings (each followed by the aggregate and version)."""

_decoder = msgspec.json.Decoder()


class LatePosting(StrEnum):
    """What to do with usage of a billing period that is already invoiced
    (``Q2C_USAGE_LATE_POLICY``)."""

    ADJUST = "adjust"
    REJECT = "reject"


class Outcome(StrEnum):
    """What became of an aggregate version: counted in its own period, moved into the open
    period by the ``adjust`` policy, or refused (nothing sent: the ``reject`` policy, or a
    correction that lowers usage, which billing meters cannot subtract)."""

    POSTED = "posted"
    ADJUSTED = "adjusted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Posting:
    """One aggregate version as handed to billing; ``quantity`` is the delta sent."""

    identifier: str
    aggregate_id: str
    version: int
    subscription: str
    billing_subscription: str
    meter: str
    period_start: datetime
    period_end: datetime
    aggregate_quantity: Decimal
    quantity: Decimal
    unit: str
    counted_at: datetime
    outcome: Outcome
    event_id: str
    posted_at: datetime
    reason: str | None = None
    meter_id: str | None = None
    customer: str | None = None
    duplicate: bool = False
    batch_ids: tuple[str, ...] = ()
    """The batches the aggregate version was made from (explain finds a delta's records)."""

    def to_json(self) -> dict[str, Any]:
        """The step result it is recorded from (times ISO 8601, quantities as text)."""
        out = asdict(self)
        for name in ("period_start", "period_end", "counted_at", "posted_at"):
            out[name] = getattr(self, name).isoformat()
        out["aggregate_quantity"] = str(self.aggregate_quantity)
        out["quantity"] = str(self.quantity)
        out["outcome"] = self.outcome.value
        out["batch_ids"] = list(self.batch_ids)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Posting:
        return cls(
            identifier=str(data["identifier"]),
            aggregate_id=str(data["aggregate_id"]),
            version=int(data["version"]),
            subscription=str(data["subscription"]),
            billing_subscription=str(data["billing_subscription"]),
            meter=str(data["meter"]),
            period_start=datetime.fromisoformat(data["period_start"]),
            period_end=datetime.fromisoformat(data["period_end"]),
            aggregate_quantity=Decimal(data["aggregate_quantity"]),
            quantity=Decimal(data["quantity"]),
            unit=str(data["unit"]),
            counted_at=datetime.fromisoformat(data["counted_at"]),
            outcome=Outcome(data["outcome"]),
            event_id=str(data["event_id"]),
            posted_at=datetime.fromisoformat(data["posted_at"]),
            reason=data.get("reason"),
            meter_id=data.get("meter_id"),
            customer=data.get("customer"),
            duplicate=bool(data.get("duplicate", False)),
            batch_ids=tuple(str(b) for b in data.get("batch_ids") or ()),
        )

    @property
    def counted(self) -> bool:
        """Sent to billing (posted or adjusted), as opposed to refused."""
        return self.outcome is not Outcome.REJECTED


def posting_step(prefix: str, identifier: str) -> str:
    """The step name that records an aggregate version (``prefix`` from ``POSTING_STEPS``,
    ``identifier`` billing's, at most 100 characters, so the name fits the step record)."""
    return f"{prefix}{identifier}"


def record_posting(conn: Connection, posting: Posting) -> None:
    """Insert the posting unless its identifier is recorded (a re-run records nothing new)."""
    row = asdict(posting)
    row["aggregate_quantity"] = str(posting.aggregate_quantity)
    row["quantity"] = str(posting.quantity)
    row["outcome"] = posting.outcome.value
    row["batch_ids"] = json.dumps(list(posting.batch_ids))
    insert_missing(conn, usage_postings, row, key="identifier")


class UsagePostingProjection:
    """The engine projection that writes a posting step's result into ``usage_postings``."""

    def on_step(self, conn: Connection, event: Event, step: str, result: str) -> None:
        if not step.startswith(POSTING_STEPS):
            return
        data = _decoder.decode(result)
        if isinstance(data, dict):
            record_posting(conn, Posting.from_json(data))

    def on_done(self, conn: Connection, events: Sequence[Event]) -> None:
        """Nothing: postings are written with their steps."""


def _posting(row: Any) -> Posting:
    return Posting(
        identifier=row.identifier,
        aggregate_id=row.aggregate_id,
        version=row.version,
        subscription=row.subscription,
        billing_subscription=row.billing_subscription,
        meter=row.meter,
        period_start=row.period_start,
        period_end=row.period_end,
        aggregate_quantity=Decimal(row.aggregate_quantity),
        quantity=Decimal(row.quantity),
        unit=row.unit,
        counted_at=row.counted_at,
        outcome=Outcome(row.outcome),
        event_id=row.event_id,
        posted_at=row.posted_at,
        reason=row.reason,
        meter_id=row.meter_id,
        customer=row.customer,
        duplicate=bool(row.duplicate),
        batch_ids=tuple(json.loads(row.batch_ids or "[]")),
    )


class UsagePostings:
    """Reads of the postings record (committed state only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _select(self, *where: Any) -> list[Posting]:
        query = select(usage_postings).where(*where) if where else select(usage_postings)
        query = query.order_by(
            usage_postings.c.period_start, usage_postings.c.meter, usage_postings.c.version
        )
        with read_connection(self.engine) as conn:
            return [_posting(r) for r in conn.execute(query)]

    def of_aggregate(self, aggregate_id: str, version: int) -> Posting | None:
        """The posting of one aggregate version, if it was handed to billing."""
        found = self._select(
            and_(usage_postings.c.aggregate_id == aggregate_id, usage_postings.c.version == version)
        )
        return found[0] if found else None

    def of_period(self, subscription: str, meter: str, period_start: datetime) -> list[Posting]:
        """Every version posted for one subscription meter and period, oldest version first."""
        return self._select(
            usage_postings.c.subscription == subscription,
            usage_postings.c.meter == meter,
            usage_postings.c.period_start == period_start,
        )

    def posted_total(self, subscription: str, meter: str, period_start: datetime) -> Decimal:
        """What billing was sent for the period so far (refused versions count nothing)."""
        return sum(
            (p.quantity for p in self.of_period(subscription, meter, period_start) if p.counted),
            Decimal(0),
        )

    def handed_total(self, subscription: str, meter: str, period_start: datetime) -> Decimal:
        """Everything handed to posting for the period, sent or refused: a new version's delta
        is taken over this, so refused usage is refused once, not again with the next one."""
        return sum(
            (p.quantity for p in self.of_period(subscription, meter, period_start)), Decimal(0)
        )

    def counted_in(
        self, billing_subscription: str, meter: str, start: datetime, end: datetime
    ) -> list[Posting]:
        """Postings billing counts in ``[start, end)`` (by the time they were counted at)."""
        return [
            p
            for p in self._select(
                usage_postings.c.billing_subscription == billing_subscription,
                usage_postings.c.meter == meter,
            )
            if p.counted and start <= p.counted_at < end
        ]

    def all(self) -> Iterator[Posting]:
        yield from self._select()

    def billing_subscriptions(self) -> list[str]:
        """Every billing subscription usage was posted to."""
        return sorted({p.billing_subscription for p in self._select()})
