"""Amendment (mid-term seat change): an approved CRM request becomes a billing quantity change
with its proration, a delta booking in the ERP and Applied in the CRM; to zero seats it is a
cancellation (``lifecycle.cancel_contract``), as CPQ amends a contract to quantity 0.

Ordering, without ever blocking the contract's subject: a request that must wait **parks**
(``ctx.park``) on a key and leaves the subject's queue, so the contract's activation, ERP booking
and payments go on; the event it waits for releases the key and the request resumes in order.

* Intake (``intake.poll_amendments``) puts a request in its contract's subject
  (``contract:<number>``), found from the hub's own state. A request whose contract the hub does
  not know yet goes to ``crm-subscription:<id>`` and parks until the contract's activation makes
  its subscription known, then is forwarded into the contract's subject.
* In the contract's subject, amendment *n* parks until the contract is activated
  (``activated_key``) and amendment *n-1* is applied (``applied_key``); applying *n* releases
  ``applied_key(n)``. So amendment 2 before 1, or both before the activation, end in the same
  state as in order. A request parked longer than ``AMENDMENT_WAIT`` goes to the exception queue.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from quote2cash.canonical import (
    Amendment,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    Ref,
    Subscription,
)
from quote2cash.connectors.roles import AmendmentOutcome
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, MappingError, PermanentError
from quote2cash.engine.events import Event
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.store_calls import in_store
from quote2cash.flows import announce
from quote2cash.flows.allocation import SeatPrice, seat_billing_prices, seat_prices
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import billed_object_id
from quote2cash.flows.lifecycle import (
    CRM_SUBSCRIPTION,
    ContractLinks,
    cancel_contract,
    contract_links,
    contract_state,
)
from quote2cash.flows.new_business import (
    ResolvedDeal,
    activate_subscription,
    line_discounts,
    map_deal,
    resolved_deal,
)
from quote2cash.flows.onboarding import dump, published
from quote2cash.flows.subjects import CONTRACT_PREFIX, contract_subject
from quote2cash.masterdata import MappedOrderLine
from quote2cash.masterdata.xref import Kind, XrefStore

AMENDMENT_REQUESTED = "crm.amendment.requested"
UNKNOWN_CONTRACT_PREFIX = "crm-subscription:"
AMENDMENT_WAIT = timedelta(days=3)
"""How long a request may wait for its contract, activation or predecessor (an ERP window may
hold the activation over a weekend); then it is an exception naming what it waited for."""

log = logging.getLogger("quote2cash.flows.amendments")


def activated_key(contract: str) -> str:
    return f"contract-activated:{contract}"


def applied_key(contract: str, number: int) -> str:
    return f"amendment-applied:{contract}:{number}"


def request_applied_key(request_id: str) -> str:
    return f"amendment-request-applied:{request_id}"


def subscription_known_key(system: str, local_id: str) -> str:
    return f"contract-known:{system}:{local_id}"


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
    subject = runtime.log.subject_of("crm", f"closed_won:{opportunity}")
    if subject is None or not subject.startswith(CONTRACT_PREFIX):
        return None
    return subject.removeprefix(CONTRACT_PREFIX)


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


# --- the handlers ---------------------------------------------------------------------------


async def request_amendment(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``crm.amendment.requested``: apply it in contract order (see the module docstring)."""
    amendment = Amendment.model_validate(event.data["amendment"])
    number = amendment.amendment_number
    if not event.subject.startswith(CONTRACT_PREFIX):
        await _forward_to_contract(ctx, event, deps, amendment)
        return
    contract = event.subject.removeprefix(CONTRACT_PREFIX)
    request_id = amendment.external_ids["crm"]
    if await in_store(ctx.released, request_applied_key(request_id)):
        log.info("%s of contract %s was already applied", amendment.label, contract)
        return
    if await in_store(ctx.released, applied_key(contract, number)):
        raise DataError(
            f"{amendment.label}: its amendment number is {number}, but contract "
            f"{contract} already applied another request as amendment {number}; expected the "
            "next free number"
        )
    if not await in_store(ctx.released, activated_key(contract)):
        ctx.park(
            activated_key(contract),
            f"{amendment.label}: waiting for the activation of contract {contract}",
            deadline=AMENDMENT_WAIT,
        )
    if number > 1 and not await in_store(ctx.released, applied_key(contract, number - 1)):
        ctx.park(
            applied_key(contract, number - 1),
            f"{amendment.label}: waiting for amendment {number - 1} of contract {contract}",
            deadline=AMENDMENT_WAIT,
        )
    try:
        await apply_amendment(ctx, deps, contract, amendment)
    except PermanentError as refused:
        await _publish_failed(ctx, deps, amendment, refused)
        raise
    ctx.release(applied_key(contract, number))
    ctx.release(request_applied_key(request_id))


async def _forward_to_contract(
    ctx: HandlerContext, event: Event, deps: FlowDeps, amendment: Amendment
) -> None:
    """From the side lane into the contract's subject, once the contract is known."""
    contract = await in_store(contract_of, deps.runtime, deps.xref, amendment)
    if contract is None:
        billing_id = amendment.subscription.id_in("billing")
        crm_id = amendment.subscription.id_in("crm")
        known = (
            subscription_known_key("billing", billing_id)
            if billing_id
            else subscription_known_key(CRM_SUBSCRIPTION, crm_id or event.subject)
        )
        ctx.park(
            known,
            f"{amendment.label}: waiting for its contract: subscription "
            f"{amendment.subscription} is not a contract the hub knows yet",
            deadline=AMENDMENT_WAIT,
        )
    ctx.emit(
        AMENDMENT_REQUESTED,
        contract_subject(contract),
        {**event.data, "contract_number": contract},
        key="forward",
    )


async def activate_contract(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.subscription.activated``: the activation, then its amendments may go ahead
    (the contract's and its subscription's keys are released with the activation's completion)."""
    await activate_subscription(ctx, event, deps)
    await in_store(release_activation, ctx, event, deps)


def release_activation(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """What an activation lets go ahead: its contract's amendments, and requests that named its
    billing or CRM subscription before the hub knew it."""
    contract = (
        event.subject.removeprefix(CONTRACT_PREFIX)
        if event.subject.startswith(CONTRACT_PREFIX)
        else event.data.get("contract_number")
    )
    if contract:
        ctx.release(activated_key(str(contract)))
    sub_id = billed_object_id(event)
    ctx.release(subscription_known_key("billing", sub_id))
    gid = deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", sub_id)
    crm_id = deps.xref.local_id(gid, CRM_SUBSCRIPTION) if gid else None
    if crm_id:
        ctx.release(subscription_known_key(CRM_SUBSCRIPTION, crm_id))


async def apply_amendment(
    ctx: HandlerContext, deps: FlowDeps, contract: str, amendment: Amendment
) -> None:
    """Billing first (the truth), then the ERP delta booking, then the CRM."""
    links = await in_store(contract_links, deps, amendment.subscription.id_in("billing"), contract)
    sub_id = links.billing_id
    before = Subscription.model_validate(
        await ctx.step(
            "billing.get_subscription",
            lambda _k: dump(deps.billing.get_subscription(sub_id)),
        )
    )
    request_id = amendment.external_ids["crm"]
    if amendment.new_quantity == 0:
        after = await cancel_contract(ctx, deps, links, before, amendment)
        await _publish_applied(ctx, deps, request_id, links, after, previous=None)
        return
    deal = await resolved_deal(ctx, deps, links.opportunity_id, links.global_id)
    order = deal.order
    mapped = map_deal(deps, order, deal.codes)
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
    after = await _change_quantity(ctx, deps, target, "billing.change_quantity")
    for other, units in await _bundle_companions(deps, before, line, item_id):
        companion = target.model_copy(
            update={
                "subscription_item": Ref.external("billing", other),
                "new_quantity": amendment.new_quantity * units,
                "previous_quantity": None if stated is None else stated * units,
            }
        )
        after = await _change_quantity(ctx, deps, companion, f"billing.change_quantity.{other}")
    await _book_delta(ctx, deps, deal, mapped, line, amendment, previous)
    announce.subscription_amended(
        ctx,
        after,
        contract_id=links.global_id,
        amendment_id=request_id,
        previous_seats=previous,
        seats=amendment.new_quantity,
        effective_at=amendment.effective_at,
    )
    await _publish_applied(ctx, deps, request_id, links, after, previous=previous)


async def _change_quantity(
    ctx: HandlerContext, deps: FlowDeps, target: Amendment, step: str
) -> Subscription:
    return Subscription.model_validate(
        await ctx.step(
            step,
            lambda key: dump(deps.billing.change_quantity(target, idempotency_key=key)),
        )
    )


async def _bundle_companions(
    deps: FlowDeps, sub: Subscription, line: MappedOrderLine, amended: str
) -> list[tuple[str, int]]:
    """The bundle's other per-unit billing items (id, units per seat), which move with its seats
    so billing keeps charging what the CRM sold (e.g. a support plan with every seat)."""
    out: list[tuple[str, int]] = []
    for price, units in seat_billing_prices(line) if len(line.billing) > 1 else []:
        for item in sub.items:
            item_id, billed = item.id_in("billing"), item.price_plan.id_in("billing")
            if item_id is None or billed is None or item_id == amended:
                continue
            if price in (billed, await deps.lookup_key_of(billed)):
                out.append((item_id, units))
    return out


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
    deal: ResolvedDeal,
    mapped: list[MappedOrderLine],
    line: MappedOrderLine,
    amendment: Amendment,
    previous: int,
) -> None:
    """The seats added (or removed, at a negative price) as a sale of their own in the ERP: one
    line per item that moves with seats, at its allocated price (a bundle's per-line items stay)."""
    delta = amendment.new_quantity - previous
    if delta == 0:
        return
    order = deal.order
    [percent] = [
        p
        for m, p in zip(mapped, await line_discounts(deps, order, mapped), strict=True)
        if m is line
    ]
    moved = await seat_prices(deps, order, line, percent)
    if not moved:
        log.info(
            "%s: line %s (%s) has no ERP item per seat; nothing to book",
            amendment.label,
            line.index,
            line.code,
        )
        return
    customer_gid = deal.customer_gid
    erp_customer = await in_store(deps.xref.local_id, customer_gid, "erp")
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
                **_priced(seat, previous, amendment.new_quantity),
            )
            for seat in moved
        ),
    )
    sale = await ctx.step(
        "erp.book_amendment",
        lambda key: deps.erp.book_order(booking, legal_entity=deal.entity, idempotency_key=key),
    )
    await in_store(_link_amendment, deps, request_id, str(sale))


def _link_amendment(deps: FlowDeps, request_id: str, sale: str) -> None:
    """The amendment request's global id, linked to its ERP booking."""
    order_gid = deps.xref.ensure_global_id(Kind.ORDER, "crm", request_id, actor="flows")
    deps.xref.link(order_gid, "erp", sale, actor="flows")


def _priced(seat: SeatPrice, previous: int, new: int) -> dict[str, Any]:
    """Quantity, unit price and amount of the seats moved, the amount as billing charges it (a
    unit price rounded away from zero, the cents left over as a discount)."""
    amount = seat.moved(previous, new)
    quantity = abs(new - previous) * seat.per_seat
    sign = 1 if new > previous else -1
    unit = Money.from_minor(sign * -(-abs(amount.minor_units) // quantity), amount.currency)
    discount = unit * quantity - amount
    return {
        "quantity": quantity,
        "unit_price": unit,
        "discount": None if discount.is_zero() else discount,
        "amount": amount,
    }


async def _publish_applied(
    ctx: HandlerContext,
    deps: FlowDeps,
    request_id: str,
    links: ContractLinks,
    after: Subscription,
    *,
    previous: int | None,
) -> None:
    outcome = AmendmentOutcome(request_id, applied=True, previous_seats=previous)
    state = await in_store(contract_state, links, after, deps)
    await ctx.step(
        "crm.publish_amendment",
        lambda key: published(deps.crm.publish_status([outcome, state], idempotency_key=key)),
    )


async def _publish_failed(
    ctx: HandlerContext, deps: FlowDeps, amendment: Amendment, refused: PermanentError
) -> None:
    """The rep sees Failed on the request (the reason is in the hub's exception queue)."""
    outcome = AmendmentOutcome(amendment.external_ids["crm"], applied=False)
    try:
        await ctx.step(
            "crm.publish_amendment_failed",
            lambda key: published(deps.crm.publish_status([outcome], idempotency_key=key)),
        )
    except PermanentError:
        log.warning("%s: could not mark the CRM request Failed after: %s", amendment.label, refused)
