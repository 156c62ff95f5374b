"""Amendment (mid-term seat change): an approved CRM request becomes a billing quantity change
with its proration, a delta booking in the ERP and Applied in the CRM; to zero seats it is a
cancellation (``lifecycle.cancel_contract``), as CPQ amends a contract to quantity 0.

Ordering, without ever blocking the contract's subject:

* Intake (``intake.poll_amendments``) puts a request in its contract's subject
  (``contract:<number>``), found from the hub's own state: billing subscription id (or CRM
  Subscription__c id) -> contract global id -> CRM opportunity -> the deal's event. A request
  whose contract the hub does not know yet goes to ``crm-subscription:<id>``, where it waits
  with ``TransientError`` (bounded by the retry policy, then dead-lettered with its reason) and,
  once the contract is known, is forwarded into the contract's subject. Waiting there blocks
  nothing else of the contract.
* In the contract's subject, amendment *n* needs the activation and amendment *n-1*:
  - activation already handled (an earlier event of the subject: the engine ran it first);
  - activation logged *after* it: the request re-emits itself to the subject's tail (behind the
    activation) and completes; activation not logged at all yet: ``TransientError`` (it blocks
    nothing that exists, and on retry finds the activation behind it);
  - *n-1* not applied yet: the request is **parked** (step ``amendment.parked``) and completes;
    when *n-1* is applied (step ``amendment.applied``) it emits the parked *n* as a follow-up
    event in the same subject, which applies it and releases *n+1* in turn.
  So amendment 2 before 1, or both before the activation, end in the same state as in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from quote2cash.canonical import (
    Amendment,
    Order,
    OrderLine,
    OrderStatus,
    Ref,
    Subscription,
)
from quote2cash.connectors.roles import StatusUpdate
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, MappingError, PermanentError, TransientError
from quote2cash.engine.events import Event, decode_data
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.allocation import seat_billing_prices, seat_prices
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.lifecycle import (
    CRM_SUBSCRIPTION,
    ContractLinks,
    cancel_contract,
    contract_links,
    subscription_update,
)
from quote2cash.flows.new_business import map_deal, read_deal
from quote2cash.flows.onboarding import contract_entity, dump, published, read_account
from quote2cash.flows.subjects import CONTRACT_PREFIX, contract_subject
from quote2cash.masterdata import MappedOrderLine
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.store.schema import events, steps

AMENDMENT_REQUESTED = "crm.amendment.requested"
ACTIVATED = "billing.subscription.activated"
UNKNOWN_CONTRACT_PREFIX = "crm-subscription:"
PARKED = "amendment.parked"
APPLIED = "amendment.applied"
AMENDMENT_RETRY = RetryPolicy(max_attempts=8, base_seconds=30.0, cap_seconds=3600.0)
"""How long a request waits for its contract or activation: about an hour, then dead-lettered."""

log = logging.getLogger("quote2cash.flows.amendments")


# --- intake ---------------------------------------------------------------------------------


def contract_of(runtime: Runtime, xref: XrefStore, amendment: Amendment) -> str | None:
    """The contract number an amendment belongs to, from the hub's state only (no calls)."""
    gid = None
    billing_id = amendment.subscription.id_in("billing")
    if billing_id:
        gid = xref.global_id_for(Kind.SUBSCRIPTION, "billing", billing_id)
    crm_id = amendment.subscription.id_in("crm")
    if gid is None and crm_id:
        gid = xref.global_id_for(Kind.SUBSCRIPTION, CRM_SUBSCRIPTION, crm_id)
    opportunity = xref.local_id(gid, "crm") if gid else None
    if opportunity is None:
        return None
    with runtime.engine.connect() as conn:
        subject = conn.execute(
            select(events.c.subject).where(
                events.c.source == "crm",
                events.c.event_id == f"closed_won:{opportunity}",
            )
        ).scalar_one_or_none()
    if subject is None or not subject.startswith(CONTRACT_PREFIX):
        return None
    return str(subject).removeprefix(CONTRACT_PREFIX)


def amendment_event(
    amendment: Amendment, contract_number: str | None, *, time: datetime, correlation_id: str
) -> Event:
    """One event per CRM request, however often it is polled; unknown contracts get a side lane."""
    request_id = amendment.external_ids["crm"]
    crm_subscription = amendment.subscription.id_in("crm") or request_id
    subject = (
        contract_subject(contract_number)
        if contract_number
        else f"{UNKNOWN_CONTRACT_PREFIX}{crm_subscription}"
    )
    return Event(
        id=f"amendment:{request_id}",
        source="crm",
        type=AMENDMENT_REQUESTED,
        subject=subject,
        time=time,
        correlation_id=correlation_id,
        data={
            "request_id": request_id,
            "amendment_number": amendment.amendment_number,
            "contract_number": contract_number,
            "amendment": amendment.model_dump(mode="json"),
        },
    )


# --- the contract's amendment state, read from the log and the steps ------------------------


@dataclass
class _ContractState:
    activated: bool = False
    activation_behind: bool = False
    applied: dict[int, str] = field(default_factory=dict)
    """Amendment number -> the CRM request applied under it."""
    parked: dict[int, dict[str, Any]] = field(default_factory=dict)


def _contract_state(runtime: Runtime, event: Event) -> _ContractState:
    """Earlier events of a subject ran before this one (the engine's order): an activation
    before it is done; one after it is still to come."""
    state = _ContractState()
    mine = event.sequence or 0
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(events.c.pos, events.c.sequence, events.c.type, events.c.data).where(
                events.c.subject == event.subject,
                events.c.type.in_([ACTIVATED, AMENDMENT_REQUESTED]),
            )
        ).all()
        amendment_rows = {r.pos: r for r in rows if r.type == AMENDMENT_REQUESTED}
        marks = (
            conn.execute(
                select(steps.c.event_pos, steps.c.name).where(
                    steps.c.event_pos.in_(list(amendment_rows)),
                    steps.c.name.in_([PARKED, APPLIED]),
                )
            ).all()
            if amendment_rows
            else []
        )
    for row in rows:
        if row.type == ACTIVATED:
            if row.sequence < mine:
                state.activated = True
            elif row.sequence > mine:
                state.activation_behind = True
    parked: list[tuple[int, dict[str, Any]]] = []
    for pos, name in marks:
        data = decode_data(amendment_rows[pos].data)
        number = int(data["amendment_number"])
        if name == APPLIED:
            state.applied[number] = str(data.get("request_id"))
        else:
            parked.append((pos, data))
    for _pos, data in sorted(parked, key=lambda p: p[0]):
        number = int(data["amendment_number"])
        if number not in state.applied:
            state.parked.setdefault(number, data)
    return state


# --- the handler ----------------------------------------------------------------------------


async def request_amendment(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``crm.amendment.requested``: apply it in contract order (see the module docstring)."""
    amendment = Amendment.model_validate(event.data["amendment"])
    number = amendment.amendment_number
    if not event.subject.startswith(CONTRACT_PREFIX):
        contract = contract_of(deps.runtime, deps.xref, amendment)
        if contract is None:
            raise TransientError(
                f"{amendment.label}: waiting for its contract: subscription "
                f"{amendment.subscription} is not a contract the hub knows yet"
            )
        ctx.emit(
            AMENDMENT_REQUESTED,
            contract_subject(contract),
            {**event.data, "contract_number": contract},
            key="forward",
        )
        return
    contract = event.subject.removeprefix(CONTRACT_PREFIX)
    state = _contract_state(deps.runtime, event)
    if number in state.applied:
        if state.applied[number] != amendment.external_ids["crm"]:
            raise DataError(
                f"{amendment.label}: field 'Amendment_Number__c' is {number}, but contract "
                f"{contract} already applied request {state.applied[number]} as amendment "
                f"{number}; expected the next free number"
            )
        log.info("%s of contract %s was already applied", amendment.label, contract)
        return
    if not state.activated:
        if state.activation_behind:
            ctx.emit(AMENDMENT_REQUESTED, event.subject, dict(event.data), key="after-activation")
            return
        raise TransientError(
            f"{amendment.label}: waiting for the activation of contract {contract}"
        )
    if number > 1 and number - 1 not in state.applied:
        await ctx.step(PARKED, lambda _k: {"number": number, "waiting_for": number - 1})
        return
    try:
        await apply_amendment(ctx, deps, contract, amendment)
    except PermanentError as refused:
        await _publish_failed(ctx, deps, amendment, refused)
        raise
    await ctx.step(APPLIED, lambda _k: {"number": number})
    successor = state.parked.get(number + 1)
    if successor is not None:
        ctx.emit(AMENDMENT_REQUESTED, event.subject, successor, key=f"release:{number + 1}")


async def apply_amendment(
    ctx: HandlerContext, deps: FlowDeps, contract: str, amendment: Amendment
) -> None:
    """Billing first (the truth), then the ERP delta booking, then the CRM."""
    links = contract_links(deps, amendment.subscription.id_in("billing"), contract)
    sub_id = links.billing_id
    before = Subscription.model_validate(
        await ctx.step(
            "billing.get_subscription",
            lambda _k: dump(deps.billing.get_subscription(sub_id)),
            system="billing",
        )
    )
    request_id = amendment.external_ids["crm"]
    if amendment.new_quantity == 0:
        after = await cancel_contract(ctx, deps, links, before, amendment)
        await _publish_applied(ctx, deps, request_id, links, after, previous=None)
        return
    order = await read_deal(ctx, deps, links.opportunity_id)
    mapped = await map_deal(deps, order)
    item_id, line, per_seat = await _amended_item(deps, before, amendment, mapped)
    held = next(i.quantity for i in before.items if i.id_in("billing") == item_id) or 0
    if held % per_seat:
        raise DataError(
            f"{amendment.label}: billing item {item_id} of subscription {sub_id} has quantity "
            f"{held}; expected a whole number of seats at {per_seat} per seat"
        )
    previous = held // per_seat
    stated = amendment.previous_quantity
    target = amendment.model_copy(
        update={
            "subscription": Ref(
                external_ids={**amendment.subscription.external_ids, "billing": sub_id}
            ),
            "subscription_item": Ref.external("billing", item_id),
            "new_quantity": amendment.new_quantity * per_seat,
            "previous_quantity": None if stated is None else stated * per_seat,
        }
    )
    after = Subscription.model_validate(
        await ctx.step(
            "billing.change_quantity",
            lambda key: dump(deps.billing.change_quantity(target, idempotency_key=key)),
            system="billing",
        )
    )
    await _book_delta(ctx, deps, order, line, amendment, previous)
    await _publish_applied(ctx, deps, request_id, links, after, previous=previous)


async def _amended_item(
    deps: FlowDeps, sub: Subscription, amendment: Amendment, mapped: list[MappedOrderLine]
) -> tuple[str, MappedOrderLine, int]:
    """The billing item, deal line and billing units per seat an amendment changes (by item id,
    product or sole line); of a bundle only a per-unit price's item (never a per-line support)."""
    wanted = amendment.subscription_item.id_in("billing")
    product = amendment.subscription_item.id_in("crm")
    for item in sub.items:
        item_id = item.id_in("billing")
        price = item.price_plan.id_in("billing")
        if item_id is None or price is None or item.quantity is None:
            continue
        if wanted is not None and wanted != item_id:
            continue
        key = await deps.lookup_key_of(price)
        for m in mapped:
            if product is not None and m.line.product.id_in("crm") != product:
                continue
            for billed, per_seat in seat_billing_prices(m):
                if billed in (price, key):
                    return item_id, m, per_seat
    raise MappingError(
        f"{amendment.label}: subscription item {amendment.subscription_item} matches no seat "
        f"line of subscription {sub.id_in('billing')} and its deal"
    )


async def _book_delta(
    ctx: HandlerContext,
    deps: FlowDeps,
    order: Order,
    line: MappedOrderLine,
    amendment: Amendment,
    previous: int,
) -> None:
    """The seats added (or removed, at a negative price) as a sale of their own in the ERP: one
    line per item that moves with seats, at its allocated price (a bundle's per-line items stay)."""
    delta = amendment.new_quantity - previous
    if delta == 0:
        return
    moved = await seat_prices(deps, order, line)
    if not moved:
        log.info(
            "%s: line %s (%s) has no ERP item per seat; nothing to book",
            amendment.label,
            line.index,
            line.code,
        )
        return
    sign = 1 if delta > 0 else -1
    account = await read_account(ctx, deps, order.customer.external_ids["crm"])
    customer_gid = deps.xref.ensure_global_id(
        Kind.CUSTOMER, "crm", account.external_ids["crm"], actor="flows"
    )
    contract_gid = deps.xref.ensure_global_id(
        Kind.SUBSCRIPTION, "crm", order.external_ids["crm"], actor="flows"
    )
    entity = contract_entity(deps, contract_gid, customer_gid, account, order.currency)
    erp_customer = deps.xref.local_id(customer_gid, "erp")
    if erp_customer is None:
        raise DataError(f"{amendment.label}: customer {customer_gid} has no ERP id")
    request_id = amendment.external_ids["crm"]
    booking = Order(
        number=f"{order.number}/A{amendment.amendment_number}",
        external_ids={"crm": request_id},
        customer=Ref(global_id=customer_gid, external_ids={"erp": erp_customer}),
        currency=order.currency,
        status=OrderStatus.BOOKED,
        booked_at=amendment.effective_at,
        start_date=amendment.effective_at.date(),
        lines=tuple(
            OrderLine(
                product=Ref(external_ids={"item_code": seat.item}),
                description=(
                    f"Amendment {amendment.amendment_number}: {previous} -> "
                    f"{amendment.new_quantity} seats"
                ),
                quantity=abs(delta) * seat.per_seat,
                unit_price=seat.unit_price * sign,
                amount=seat.unit_price * sign * (abs(delta) * seat.per_seat),
            )
            for seat in moved
        ),
    )
    sale = await ctx.step(
        "erp.book_amendment",
        lambda key: deps.erp.book_order(
            booking, legal_entity=entity.entity_key, idempotency_key=key
        ),
        system="erp",
    )
    order_gid = deps.xref.ensure_global_id(Kind.ORDER, "crm", request_id, actor="flows")
    deps.xref.link(order_gid, "erp", str(sale), actor="flows")


async def _publish_applied(
    ctx: HandlerContext,
    deps: FlowDeps,
    request_id: str,
    links: ContractLinks,
    after: Subscription,
    *,
    previous: int | None,
) -> None:
    fields: dict[str, Any] = {"Status__c": "Applied"}
    if previous is not None:
        fields["Previous_Quantity__c"] = previous
    await ctx.step(
        "crm.publish_amendment",
        lambda key: published(
            deps.crm.publish_status(
                [
                    StatusUpdate("Amendment_Request__c", "Id", request_id, fields),
                    subscription_update(links, after, deps),
                ],
                idempotency_key=key,
            )
        ),
        system="crm",
    )


async def _publish_failed(
    ctx: HandlerContext, deps: FlowDeps, amendment: Amendment, refused: PermanentError
) -> None:
    """The rep sees Failed on the request (the reason is in the hub's exception queue)."""
    request_id = amendment.external_ids["crm"]
    try:
        await ctx.step(
            "crm.publish_amendment_failed",
            lambda key: published(
                deps.crm.publish_status(
                    [
                        StatusUpdate(
                            "Amendment_Request__c", "Id", request_id, {"Status__c": "Failed"}
                        )
                    ],
                    idempotency_key=key,
                )
            ),
            system="crm",
        )
    except PermanentError:
        log.warning("%s: could not mark the CRM request Failed after: %s", amendment.label, refused)
