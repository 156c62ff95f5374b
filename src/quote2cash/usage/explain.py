"""``q2c usage explain INVOICE_LINE``: which aggregates were posted into a metered invoice line
and, through the ledger, which batches and records made them, with the check that the line's
amount is the records' quantity times the unit price, to the cent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from quote2cash.canonical import Money
from quote2cash.canonical.money import exact_product
from quote2cash.connectors.roles import Billing, UsageLine
from quote2cash.engine.errors import DataError
from quote2cash.usage.postings import Posting, UsagePostings
from quote2cash.usage.records import AcceptedRecord, UsageLedger

_BY_POSITION = re.compile(r"^(?P<invoice>[^\s#:/]+)\s*[#:/ ]\s*(?P<position>\d+)$")


@dataclass(frozen=True)
class PostedPart:
    """One aggregate version counted in the line and the records it added."""

    posting: Posting
    records: tuple[AcceptedRecord, ...]

    @property
    def records_quantity(self) -> Decimal:
        return sum((r.quantity for r in self.records), Decimal(0))


@dataclass(frozen=True)
class Explanation:
    """A metered line, what was posted into it and the records behind it."""

    line: UsageLine
    parts: tuple[PostedPart, ...]

    @property
    def records_quantity(self) -> Decimal:
        return sum((p.records_quantity for p in self.parts), Decimal(0))

    @property
    def posted_quantity(self) -> Decimal:
        return sum((p.posting.quantity for p in self.parts), Decimal(0))

    @property
    def records_amount(self) -> Money:
        """The records' quantity at the line's unit price, rounded to the cent (half up)."""
        return Money.quantize(
            exact_product(self.records_quantity, self.line.unit_amount),
            self.line.amount.currency,
        )

    @property
    def agrees(self) -> bool:
        return (
            self.records_amount == self.line.amount
            and self.records_quantity == self.line.quantity == self.posted_quantity
        )

    def to_json(self) -> dict[str, Any]:
        line = self.line
        return {
            "line": {
                "invoice": line.invoice_id,
                "invoice_number": line.invoice_number,
                "line": line.line_id,
                "position": line.position,
                "subscription": line.subscription,
                "meter": line.meter,
                "period_start": line.period_start.isoformat(),
                "period_end": line.period_end.isoformat(),
                "quantity": str(line.quantity),
                "unit_amount": str(line.unit_amount),
                "amount": str(line.amount.amount),
                "currency": line.amount.currency,
            },
            "aggregates": [
                {
                    "aggregate_id": p.posting.aggregate_id,
                    "version": p.posting.version,
                    "identifier": p.posting.identifier,
                    "outcome": p.posting.outcome.value,
                    "period_start": p.posting.period_start.isoformat(),
                    "period_end": p.posting.period_end.isoformat(),
                    "posted_quantity": str(p.posting.quantity),
                    "posted_at": p.posting.posted_at.isoformat(),
                    "batches": sorted({r.batch_id for r in p.records}),
                    "records": [
                        {
                            "source": r.source,
                            "record_id": r.record_id,
                            "batch_id": r.batch_id,
                            "quantity": str(r.quantity),
                            "unit": r.unit,
                            "timestamp": r.timestamp.isoformat(),
                            "revision": r.revision,
                        }
                        for r in p.records
                    ],
                }
                for p in self.parts
            ],
            "records_quantity": str(self.records_quantity),
            "posted_quantity": str(self.posted_quantity),
            "records_amount": str(self.records_amount.amount),
            "agrees": self.agrees,
        }


async def find_line(billing: Billing, postings: UsagePostings, reference: str) -> UsageLine:
    """A metered line by billing's line id, or ``INVOICE#N`` (its N-th line, 1-based)."""
    by_position = _BY_POSITION.match(reference.strip())
    if by_position:
        position = int(by_position["position"])
        lines = await billing.usage_lines(invoice=by_position["invoice"])
        for line in lines:
            if line.position == position:
                return line
        raise DataError(
            f"invoice {by_position['invoice']}: line {position} is not a metered usage line "
            f"(metered lines: {', '.join(str(x.position) for x in lines) or 'none'})"
        )
    for subscription in postings.billing_subscriptions():
        for line in await billing.usage_lines(subscription=subscription):
            if line.line_id == reference:
                return line
    raise DataError(
        f"invoice line {reference!r}: no metered line of a subscription the hub posted usage "
        "to has this id (give billing's line id, or INVOICE_ID#LINE_NUMBER)"
    )


def explain_line(line: UsageLine, postings: UsagePostings, ledger: UsageLedger) -> Explanation:
    """The postings counted in the line's period and, per posting, the records of the batches
    its version added (an aggregate posted in one go: all its records)."""
    parts: list[PostedPart] = []
    counted = postings.counted_in(line.subscription, line.meter, line.period_start, line.period_end)
    for posting in counted:
        earlier = [
            p
            for p in postings.of_period(posting.subscription, posting.meter, posting.period_start)
            if p.version < posting.version
        ]
        seen = {b for p in earlier for b in p.batch_ids}
        added = set(posting.batch_ids) - seen
        try:
            held = list(ledger.records_of(posting.aggregate_id))
        except LookupError:
            raise DataError(
                f"invoice line {line.line_id}: usage aggregate {posting.aggregate_id} was posted "
                "into it but the usage ledger does not hold it (archived, or another store)"
            ) from None
        records = tuple(r for r in held if not added or r.batch_id in added)
        parts.append(PostedPart(posting, records))
    return Explanation(line, tuple(parts))


async def explain(
    billing: Billing, postings: UsagePostings, ledger: UsageLedger, reference: str
) -> Explanation:
    """Find the line in billing, then what the hub posted into it and the records behind it."""
    return explain_line(await find_line(billing, postings, reference), postings, ledger)
