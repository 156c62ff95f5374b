"""Usage reconciliation: per subscription meter and billing period, what the hub ingested (the
ledger), what it posted (its postings record), what billing counted (meter event summaries) and
what billing invoiced (metered invoice lines) must agree; every disagreement is a drift.

The ERP side of usage is its invoice: the three-way invoice comparison already holds billing's
invoice total against the ERP's, so a usage line billed wrong in billing shows there too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from quote2cash.connectors.roles import Billing, UsageLine
from quote2cash.engine.runtime import Runtime
from quote2cash.reconcile.model import Drift, DriftKind, Repair
from quote2cash.usage.postings import Posting, UsagePostings
from quote2cash.usage.records import UsageLedger

OBJECT = "usage"


@dataclass(frozen=True)
class UsagePeriod:
    """One subscription meter's billing period as each side sees it (None: not read)."""

    subscription: str
    billing_subscription: str
    meter: str
    period_start: datetime
    period_end: datetime
    ingested: Decimal | None
    posted: Decimal
    refused: Decimal
    sent_into: Decimal
    """What the hub sent billing to count in this period (its own usage and late usage
    adjusted into it)."""
    counted: Decimal
    invoiced: Decimal | None
    line: str | None
    identifiers: tuple[str, ...]
    refusals: tuple[str, ...] = ()
    """Why versions were refused (late-usage policy, a correction lowering usage)."""

    @property
    def key(self) -> str:
        return f"{self.subscription} {self.meter} {self.period_start.date().isoformat()}"

    def values(self) -> dict[str, str]:
        shown = {
            "ingested": self.ingested,
            "posted": self.posted,
            "refused": self.refused,
            "sent_into_period": self.sent_into,
            "billing_counted": self.counted,
            "invoiced": self.invoiced,
        }
        return {k: str(v) for k, v in shown.items() if v is not None}


async def read_usage_periods(
    runtime: Runtime,
    billing: Billing,
    postings: UsagePostings,
    ledger: UsageLedger | None,
    *,
    since: datetime | None = None,
) -> list[UsagePeriod]:
    """Every period the hub posted to or holds pending usage for, read from each side."""
    by_period: dict[tuple[str, str, datetime], list[Posting]] = defaultdict(list)
    ends: dict[tuple[str, str, datetime], datetime] = {}
    billing_of: dict[str, str] = {}
    for posting in postings.all():
        key = (posting.subscription, posting.meter, posting.period_start)
        by_period[key].append(posting)
        ends[key] = posting.period_end
        billing_of[posting.subscription] = posting.billing_subscription
    for aggregate in ledger.pending_aggregates() if ledger is not None else ():
        key = (aggregate.subscription, aggregate.meter, aggregate.period_start)
        by_period.setdefault(key, [])
        ends.setdefault(key, aggregate.period_end)
    lines: dict[str, list[UsageLine]] = {}
    found: list[UsagePeriod] = []
    for key in sorted(by_period):
        subscription, meter, start = key
        end = ends[key]
        if since is not None and end < since:
            continue
        period_postings = by_period[key]
        billing_id = billing_of.get(subscription, subscription)
        if billing_id not in lines:
            async with runtime.gates.call("billing", "billing.usage_lines"):
                lines[billing_id] = await billing.usage_lines(subscription=billing_id)
        async with runtime.gates.call("billing", "billing.usage_counted"):
            counted = await billing.usage_counted(billing_id, meter, start, end)
        line = next(
            (
                x
                for x in lines[billing_id]
                if x.meter == meter and x.period_start == start and x.period_end == end
            ),
            None,
        )
        sent_into = sum(
            (p.quantity for p in postings.counted_in(billing_id, meter, start, end)), Decimal(0)
        )
        found.append(
            UsagePeriod(
                subscription=subscription,
                billing_subscription=billing_id,
                meter=meter,
                period_start=start,
                period_end=end,
                ingested=ledger.ingested_total(subscription, meter, start) if ledger else None,
                posted=sum((p.quantity for p in period_postings if p.counted), Decimal(0)),
                refused=sum((p.quantity for p in period_postings if not p.counted), Decimal(0)),
                sent_into=sent_into,
                counted=counted,
                invoiced=line.quantity if line else None,
                line=line.line_id if line else None,
                identifiers=tuple(p.identifier for p in period_postings),
                refusals=tuple(p.reason or "refused" for p in period_postings if not p.counted),
            )
        )
    return found


def usage_drifts(periods: list[UsagePeriod]) -> list[Drift]:
    """Ingested vs posted, posted vs counted by billing, counted vs invoiced, per period."""
    drifts: list[Drift] = []
    for period in periods:

        def drift(kind: DriftKind, detail: str, action: str, p: UsagePeriod = period) -> Drift:
            ids = {
                "billing": (p.billing_subscription, *((p.line,) if p.line else ())),
                "hub": p.identifiers,
            }
            return Drift(kind, OBJECT, p.key, ids, detail, Repair(action), p.values())

        handed = period.posted + period.refused
        if period.ingested is not None and period.ingested != handed:
            drifts.append(
                drift(
                    DriftKind.MISSING if period.ingested > handed else DriftKind.USAGE,
                    f"ingested {period.ingested} {period.meter} but handed {handed} to billing "
                    f"(posted {period.posted}, refused {period.refused})",
                    "let the usage posting flow run (or replay the batch's "
                    "usage.batch.accepted event); more handed than ingested needs a person",
                )
            )
        elif period.refused:
            drifts.append(
                drift(
                    DriftKind.USAGE,
                    f"ingested {period.ingested if period.ingested is not None else '?'} "
                    f"{period.meter}, billing was sent {period.posted}: "
                    + "; ".join(period.refusals),
                    "a person credits or charges the refused usage (credit note or one-off "
                    "charge on the next invoice)",
                )
            )
        if period.counted != period.sent_into:
            more = period.counted > period.sent_into
            drifts.append(
                drift(
                    DriftKind.USAGE,
                    f"billing counted {period.counted} {period.meter} in the period, the hub "
                    f"sent {period.sent_into}: "
                    + (
                        "billing holds usage the hub never posted"
                        if more
                        else "a posted meter event is missing in billing"
                    ),
                    "cancel the extra meter event in billing"
                    if more
                    else "post the missing usage again under a new identifier (billing lost it)",
                )
            )
        if period.invoiced is not None and period.invoiced != period.sent_into:
            drifts.append(
                drift(
                    DriftKind.USAGE,
                    f"invoice line {period.line} bills {period.invoiced} {period.meter}, the hub "
                    f"sent {period.sent_into} for the period",
                    "credit or charge the difference on the next invoice (a person decides)",
                )
            )
    return drifts


async def reconcile_usage(
    runtime: Runtime,
    billing: Billing,
    ledger: UsageLedger | None,
    *,
    since: datetime | None = None,
) -> tuple[list[UsagePeriod], list[Drift]]:
    """The periods read and the usage drifts among them."""
    periods = await read_usage_periods(
        runtime, billing, UsagePostings(runtime.engine), ledger, since=since
    )
    return periods, usage_drifts(periods)
