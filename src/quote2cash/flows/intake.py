"""Intake: what the CRM and billing tell us becomes events in the log, durable before acked.

Webhooks (billing events, the CRM's Closed-Won callout, each read by its connector's mapping)
and polling (the fallback) produce the same event ids, so a deal or an invoice seen both ways
is logged once. A billing event joins its contract's subject (the contract number its
connector reads from billing) and carries the correlation id the deal started with.

One bad record never stops intake: a record that cannot be mapped or logged is logged instead
as ``intake.record.rejected`` in a subject of its own, whose handler puts it in the exception
queue with its reason (record, field, what was expected); the page's other records are logged
and the cursor moves on. A record fixed at its source later is logged afresh when polled again.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from functools import partial
from typing import TypeVar

from quote2cash.canonical import Amendment, Order
from quote2cash.connectors.roles import Billing, BillingEvent, Crm, Page, RejectedRecord
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.cursors import read_cursor, save_cursor
from quote2cash.engine.errors import Category, DataError, IntegrationError, PermanentError
from quote2cash.engine.events import Event, EventValidationError, validate_envelope
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.subjects import contract_subject
from quote2cash.masterdata.xref import XrefStore
from quote2cash.observability import tracing

DEAL_NAMESPACE = uuid.UUID("0b1e2c55-7d0f-4c8e-9a61-3f2d4e5a6b7c")
CLOSED_WON = "crm.opportunity.closed_won"
REJECTED = "intake.record.rejected"
log = logging.getLogger("quote2cash.flows.intake")


def correlation_of_subject(runtime: Runtime, subject: str) -> str | None:
    """The correlation id the subject's first event carried (the deal's)."""
    return runtime.log.first_correlation(subject)


def deal_event_id(opportunity_id: str) -> str:
    """The id of a won deal's event (source ``crm``), the same however it was heard of."""
    return f"closed_won:{opportunity_id}"


def deal_event(opportunity_id: str, contract_number: str, *, time: datetime) -> Event:
    """The one event for a won deal, however it was heard of (callout or polling)."""
    return Event(
        id=deal_event_id(opportunity_id),
        source="crm",
        type=CLOSED_WON,
        subject=contract_subject(contract_number),
        time=time,
        correlation_id=f"deal-{uuid.uuid5(DEAL_NAMESPACE, opportunity_id)}",
        data={"opportunity_id": opportunity_id, "contract_number": contract_number},
    )


def order_event(order: Order, *, time: datetime) -> Event:
    opportunity_id = order.external_ids["crm"]
    return deal_event(opportunity_id, order.number or opportunity_id, time=time)


def billing_event(runtime: Runtime, be: BillingEvent) -> Event:
    """A billing platform event in its contract's subject, with the deal's correlation id."""
    number = be.data.get("contract_number")
    subject = contract_subject(number) if number else f"billing:{be.subject}"
    correlation = correlation_of_subject(runtime, subject) or f"billing-{be.subject or be.id}"
    return Event(
        id=be.id,
        source="billing",
        type=be.type,
        subject=subject,
        time=be.created,
        correlation_id=correlation,
        data=be.data,
    )


def billed_object_id(event: Event) -> str:
    """Billing's id of what a billing event is about (``BillingEvent``'s ``object_id``)."""
    ident = event.data.get("object_id")
    if not ident:
        raise DataError(f"event {event.id}: field 'data.object_id' is missing")
    return str(ident)


def rejected_event(rejected: RejectedRecord, *, time: datetime) -> Event:
    """A record intake could not take, as an event of its own subject (it blocks nothing); the
    same record refused for the same reason is logged once."""
    digest = hashlib.sha256(rejected.reason.encode()).hexdigest()[:16]
    record = rejected.record[:120]
    return Event(
        id=f"rejected:{record}:{digest}",
        source=rejected.system,
        type=REJECTED,
        subject=f"rejected:{rejected.system}:{record}",
        time=time,
        correlation_id=f"rejected-{uuid.uuid5(DEAL_NAMESPACE, rejected.system + record)}",
        data={
            "system": rejected.system,
            "record": rejected.record,
            "reason": rejected.reason,
            "category": rejected.category,
            "raw": rejected.raw,
        },
    )


async def hold_rejected_record(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``intake.record.rejected``: the exception queue shows the record and why it was refused
    (its raw form is in the event's data); a person fixes it at its source."""
    data = event.data
    category = str(data.get("category"))
    raise PermanentError(
        f"{data.get('record')} was not taken in: {data.get('reason')}",
        category=category if category in set(Category) else Category.DATA,
        system=str(data.get("system") or event.source),
    )


Built = tuple[str, Callable[[], Event]]
T = TypeVar("T")
"""A record's name and how to build its event (building may refuse the record)."""


def intake_events(
    system: str, built: Iterable[Built], rejected: Iterable[RejectedRecord], *, time: datetime
) -> list[Event]:
    """The events to log for a page: each good record's, and a rejected event for each record
    the connector or the event envelope refused."""
    out: list[Event] = []
    refused = list(rejected)
    for record, build in built:
        try:
            event = build()
            validate_envelope(event)
        except (IntegrationError, EventValidationError) as exc:
            category = exc.category.value if isinstance(exc, PermanentError) else "data"
            reason = exc.message if isinstance(exc, IntegrationError) else str(exc)
            refused.append(RejectedRecord(system, record, reason, category))
            continue
        out.append(event)
    for bad in refused:
        log.warning("intake refused %s %s: %s", bad.system, bad.record, bad.reason)
        out.append(rejected_event(bad, time=time))
    return out


def _new(runtime: Runtime, batch: list[Event]) -> int:
    """Log a polled page; each event starts its own trace (one per business transaction)."""
    if not batch:
        return 0
    traced, spans = tracing.start_intake(batch, "poll")
    duplicates = [r.duplicate for r in runtime.log.append_many(traced)]
    tracing.end_intake(spans, duplicates)
    return duplicates.count(False)


async def poll_billing(runtime: Runtime, billing: Billing, *, source: str = "billing") -> int:
    """Log every billing event since the stored cursor; returns how many were new."""
    new = 0
    cursor = read_cursor(runtime, source)
    while True:
        page = await billing.list_events(cursor=cursor, limit=100)
        built: list[Built] = [
            (f"event {be.id}", partial(billing_event, runtime, be)) for be in page.items
        ]
        new += _new(
            runtime, intake_events("billing", built, page.rejected, time=runtime.clock.now())
        )
        if page.next_cursor is None or page.next_cursor == cursor:
            break
        cursor = page.next_cursor
        save_cursor(runtime, source, cursor)
        if not page.items and not page.rejected:
            break
    return new


async def poll_since(
    runtime: Runtime,
    source: str,
    fetch: Callable[[datetime | None, str | None], Awaitable[Page[T]]],
    build: Callable[[T, datetime], Built],
) -> int:
    """Log every record ``fetch`` pages through since ``source``'s cursor (one CRM poll); the
    cursor then moves to when this poll started, so a change made meanwhile is read again."""
    raw = read_cursor(runtime, source)
    since = datetime.fromisoformat(raw) if raw else None
    started = runtime.clock.now()
    new = 0
    cursor: str | None = None
    while True:
        page = await fetch(since, cursor)
        built = [build(item, started) for item in page.items]
        new += _new(runtime, intake_events("crm", built, page.rejected, time=started))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    save_cursor(runtime, source, started.isoformat())
    return new


async def poll_crm(runtime: Runtime, crm: Crm, *, source: str = "crm") -> int:
    """Log every Closed Won deal changed since the last poll (by SystemModstamp)."""
    return await poll_since(
        runtime,
        source,
        lambda since, cursor: crm.closed_won_deals(since=since, cursor=cursor),
        lambda deal, at: (
            f"Opportunity {deal.external_ids.get('crm')}",
            partial(order_event, deal, time=at),
        ),
    )


async def poll_accounts(runtime: Runtime, crm: Crm, *, source: str = "crm.accounts") -> int:
    """Log every change of an onboarded CRM account since the last poll (by SystemModstamp),
    one event per change in the account's own subject (``flows.accounts``)."""
    from quote2cash.flows.accounts import account_event

    return await poll_since(
        runtime,
        source,
        lambda since, cursor: crm.changed_accounts(since=since, cursor=cursor),
        lambda c, at: (f"Account {c.account_id}", partial(account_event, c, time=at)),
    )


async def poll_amendments(
    runtime: Runtime, crm: Crm, xref: XrefStore, *, source: str = "crm.amendments"
) -> int:
    """Log every approved amendment request changed since the last poll, in its contract's
    subject when the hub knows the contract (see ``flows.amendments``)."""
    from quote2cash.flows.amendments import amendment_event, contract_of

    def request(amendment: Amendment, at: datetime) -> Event:
        contract = contract_of(runtime, xref, amendment)
        subject = contract_subject(contract) if contract else None
        correlation = (correlation_of_subject(runtime, subject) if subject else None) or (
            f"amendment-{uuid.uuid5(DEAL_NAMESPACE, amendment.external_ids['crm'])}"
        )
        return amendment_event(amendment, contract, time=at, correlation_id=correlation)

    return await poll_since(
        runtime,
        source,
        lambda since, cursor: crm.amendment_requests(since=since, cursor=cursor),
        lambda a, at: (f"amendment request {a.external_ids.get('crm')}", partial(request, a, at)),
    )
