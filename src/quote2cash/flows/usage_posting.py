"""Usage posting: accepted usage, aggregated per subscription meter and billing period, is
added to billing's count once per aggregate version, in period order per subscription.

Versions are first handed over (frozen in the ledger, a recorded step), so what is posted never
changes under the flow. Each version is then one gated billing step
(``billing.post_usage <aggregate>:v<version>``) whose result is the posting record, written with
the step (``usage.postings``); billing's identifier is ``<aggregate>:v<version>`` and only the
delta over what the period already got is sent, so a re-run, a replay or a second event for the
same batch never counts usage twice. Usage of a period billing has already invoiced follows the
late-usage policy: ``adjust`` counts the delta in the subscription's open period (the next
invoice), ``reject`` records it as refused with the reason (reconciliation reports it) and sends
nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from quote2cash.canonical import Subscription
from quote2cash.connectors.roles import UsagePosting
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, MappingError
from quote2cash.engine.events import Event
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.lifecycle import contract_links
from quote2cash.flows.onboarding import dump
from quote2cash.flows.subjects import CONTRACT_PREFIX
from quote2cash.masterdata.xref import Kind
from quote2cash.usage.postings import LatePosting, Outcome, Posting, posting_step
from quote2cash.usage.records import UsageAggregate

log = logging.getLogger("quote2cash.flows.usage_posting")

BATCH_ACCEPTED = "usage.batch.accepted"


IDENTIFIER_LIMIT = 100
"""Stripe's longest meter event identifier."""


def usage_identifier(aggregate: UsageAggregate) -> str:
    """Billing's dedup key of one aggregate version: ``<aggregate id>:v<version>``, or a hash of
    the aggregate id in its place when that would be longer than billing takes."""
    identifier = f"{aggregate.aggregate_id}:v{aggregate.version}"
    if len(identifier) <= IDENTIFIER_LIMIT:
        return identifier
    digest = hashlib.sha256(aggregate.aggregate_id.encode()).hexdigest()[:40]
    return f"q2c-{digest}:v{aggregate.version}"


def counted_at(now: datetime, start: datetime, end: datetime) -> datetime:
    """When billing is told the usage happened: now, kept inside the whole minutes of
    ``[start, end)`` (Stripe takes timestamps of the last 35 days only, so not the start of a
    long period, and reads its counts back over whole minutes only)."""
    first = start + timedelta(seconds=-start.timestamp() % 60)
    last = end - timedelta(seconds=end.timestamp() % 60)
    if last <= first:
        first, last = start, end
    return max(first, min(now, last - timedelta(seconds=1)))


async def post_accepted_usage(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``usage.batch.accepted``: hand the batch's aggregate versions (``data['aggregates']``)
    and its subscriptions' pending ones over to posting (frozen: later records make new
    versions), then post each version not posted yet, oldest period first.

    The hand-over is a recorded step, so a re-run posts exactly the versions and quantities it
    froze; the ledger's hand-over is idempotent, so a crash before that record re-freezes the
    same versions (named by the event). An aggregate is the batch's when it names one of its
    subscriptions by any of its names (as given, billing's id, the hub's global id), resolved
    once per event, never per aggregate."""
    ledger = deps.usage_ledger
    if ledger is None:
        raise MappingError("usage posting needs the usage ledger; none is configured")
    named = _subscriptions_named(event)
    billing_ids = {n: billing_subscription_of(deps, n) for n in sorted(named)}
    aliases = named | set(billing_ids.values()) | _global_ids(deps, set(billing_ids.values()))
    listed = event.data.get("aggregates")
    ids = {str(i) for i in listed if i} if isinstance(listed, list) else set()
    ids |= {a.aggregate_id for a in ledger.pending_aggregates() if a.subscription in aliases}

    def hand_over(_key: str) -> list[dict[str, Any]]:
        return [_aggregate_json(a) for a in ledger.hand_over(sorted(ids), ctx.now)]

    handed = [_aggregate_of(d) for d in await ctx.local_step("usage.hand_over", hand_over)]
    handed.sort(key=lambda a: (a.subscription, a.period_start, a.meter, a.version))
    read: dict[str, Subscription] = {}
    for aggregate in handed:
        if deps.usage_postings.of_aggregate(aggregate.aggregate_id, aggregate.version):
            continue
        billing_id = billing_ids.get(aggregate.subscription) or billing_subscription_of(
            deps, aggregate.subscription
        )
        if billing_id not in read:
            read[billing_id] = await _read_subscription(ctx, deps, billing_id)
        await _post(ctx, event, deps, aggregate, billing_id, read[billing_id])


def _aggregate_json(aggregate: UsageAggregate) -> dict[str, Any]:
    return {
        "aggregate_id": aggregate.aggregate_id,
        "subscription": aggregate.subscription,
        "meter": aggregate.meter,
        "period_start": aggregate.period_start.isoformat(),
        "period_end": aggregate.period_end.isoformat(),
        "quantity": str(aggregate.quantity),
        "unit": aggregate.unit,
        "record_count": aggregate.record_count,
        "batch_ids": list(aggregate.batch_ids),
        "version": aggregate.version,
    }


def _aggregate_of(data: dict[str, Any]) -> UsageAggregate:
    return UsageAggregate(
        aggregate_id=str(data["aggregate_id"]),
        subscription=str(data["subscription"]),
        meter=str(data["meter"]),
        period_start=datetime.fromisoformat(data["period_start"]),
        period_end=datetime.fromisoformat(data["period_end"]),
        quantity=Decimal(data["quantity"]),
        unit=str(data["unit"]),
        record_count=int(data["record_count"]),
        batch_ids=tuple(str(b) for b in data["batch_ids"]),
        version=int(data["version"]),
    )


async def _read_subscription(ctx: HandlerContext, deps: FlowDeps, billing_id: str) -> Subscription:
    """The subscription's open period, read once per event (recorded, so a re-run agrees)."""

    def read(_key: str) -> Awaitable[dict[str, Any]]:
        return dump(deps.billing.get_subscription(billing_id))

    return Subscription.model_validate(
        await ctx.step(f"billing.get_subscription {billing_id}", read)
    )


async def _post(
    ctx: HandlerContext,
    event: Event,
    deps: FlowDeps,
    aggregate: UsageAggregate,
    billing_id: str,
    subscription: Subscription,
) -> None:
    before = deps.usage_postings.handed_total(
        aggregate.subscription, aggregate.meter, aggregate.period_start
    )
    delta = aggregate.quantity - before
    late = aggregate.period_end <= subscription.current_period_start
    identifier = usage_identifier(aggregate)

    def record(outcome: Outcome, quantity: Decimal, at: datetime, **more: Any) -> Posting:
        return Posting(
            identifier=identifier,
            aggregate_id=aggregate.aggregate_id,
            version=aggregate.version,
            subscription=aggregate.subscription,
            billing_subscription=billing_id,
            meter=aggregate.meter,
            period_start=aggregate.period_start,
            period_end=aggregate.period_end,
            aggregate_quantity=aggregate.quantity,
            quantity=quantity,
            unit=aggregate.unit,
            counted_at=at,
            outcome=outcome,
            event_id=event.id,
            posted_at=ctx.now,
            batch_ids=aggregate.batch_ids,
            **more,
        )

    reason = None
    if delta < 0:
        reason = (
            f"usage {identifier}: the correction lowers {aggregate.meter} of subscription "
            f"{billing_id} for {aggregate.period_start.date().isoformat()} by {-delta} "
            f"{aggregate.unit}; billing meters only add, so it is not posted (a person credits "
            "it)"
        )
    elif late and deps.late_usage is LatePosting.REJECT:
        reason = (
            f"usage {identifier}: billing period {aggregate.period_start.isoformat()} - "
            f"{aggregate.period_end.isoformat()} of subscription {billing_id} is already "
            f"invoiced (open period starts {subscription.current_period_start.isoformat()}); "
            f"late-usage policy reject: {delta} {aggregate.unit} not posted"
        )
    if reason is not None:
        log.warning("%s", reason)
        await ctx.local_step(
            posting_step("usage.refuse ", identifier),
            lambda _k: record(Outcome.REJECTED, delta, ctx.now, reason=reason).to_json(),
        )
        return
    at = (
        counted_at(ctx.now, subscription.current_period_start, subscription.current_period_end)
        if late
        else counted_at(ctx.now, aggregate.period_start, aggregate.period_end)
    )
    outcome = Outcome.ADJUSTED if late else Outcome.POSTED

    async def post(key: str) -> dict[str, Any]:
        (receipt,) = await deps.billing.post_usage(
            [UsagePosting(billing_id, aggregate.meter, delta, at, identifier)],
            idempotency_key=key,
        )
        return record(
            outcome,
            delta,
            at,
            meter_id=receipt.meter_id,
            customer=receipt.customer,
            duplicate=receipt.duplicate,
        ).to_json()

    await ctx.step(posting_step("billing.post_usage ", identifier), post)


def _subscriptions_named(event: Event) -> set[str]:
    """The subscriptions a batch event is about: ``data['subscriptions']`` /
    ``data['subscription']``, and the contract its subject names."""
    named: set[str] = set()
    listed = event.data.get("subscriptions")
    if isinstance(listed, list):
        named |= {str(s) for s in listed if s}
    if event.data.get("subscription"):
        named.add(str(event.data["subscription"]))
    if event.subject.startswith(CONTRACT_PREFIX):
        named.add(event.subject.removeprefix(CONTRACT_PREFIX))
    if not named:
        raise DataError(
            f"{event.type} {event.id}: names no subscription (data.subscription(s) or a "
            f"{CONTRACT_PREFIX} subject expected)"
        )
    return named


def _global_ids(deps: FlowDeps, billing_ids: set[str]) -> set[str]:
    """The hub's global ids of billing subscriptions (another name an aggregate may use)."""
    found = (deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", b) for b in sorted(billing_ids))
    return {g for g in found if g}


def billing_subscription_of(deps: FlowDeps, reference: str) -> str:
    """Billing's id of a subscription named by billing's own id (returned as it is), the hub's
    global id of the contract, or its contract number; an unknown one is returned as it is
    (billing then says whether it exists)."""
    if deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", reference) is not None:
        return reference
    try:
        billing = deps.xref.local_id(reference, "billing")
    except (DataError, ValueError):
        billing = None
    if billing:
        return billing
    try:
        return contract_links(deps, None, reference).billing_id
    except DataError:
        return reference
