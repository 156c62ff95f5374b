"""New business (SubmitSubscriptionOrder): a Closed Won deal becomes a billing subscription,
then, on billing's activation event, an ERP booking; the CRM hears back at each stage.

Catalog mapping, legal-entity resolution and tax determination run before any system is written:
an unmapped product or an unresolvable account is an exception with its reason, never
half-processed. The tax rates determined for the account are the subscription's tax rates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

from quote2cash.canonical import (
    Customer,
    Money,
    Order,
    PricePlan,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    UsageType,
)
from quote2cash.connectors.roles import DealActivated, DealSubscribed
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event
from quote2cash.engine.store_calls import in_store
from quote2cash.engine.trail import recorded_result
from quote2cash.flows import announce
from quote2cash.flows.allocation import billed, erp_lines, unit_amounts
from quote2cash.flows.customers import resolve_customer
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import billed_object_id, deal_event_id
from quote2cash.flows.lifecycle import ContractLinks, publish_subscription
from quote2cash.flows.onboarding import (
    contract_entity,
    customer_record,
    dump,
    publish_account_ids,
    published,
    read_account,
    write_billing_customer,
    write_erp_customer,
)
from quote2cash.masterdata import MappedOrderLine, codes_by_id, product_code_ids
from quote2cash.masterdata.entities import EntityResolution
from quote2cash.masterdata.xref import Kind

DEAL_RESOLVED = "deal.resolved"
"""The step where Closed Won records what it resolved, for the contract's later events."""


@dataclass(frozen=True)
class ResolvedDeal:
    """What Closed Won resolved for a contract (the deal, its products' codes, the CRM account,
    the customer's global id as the legal entity serves it, the legal entity): activation and
    amendments use it instead of reading the CRM and resolving again."""

    order: Order
    codes: dict[str, str]
    account_id: str
    customer_gid: str
    entity: str

    def as_json(self) -> dict[str, Any]:
        return {
            "order": self.order.model_dump(mode="json"),
            "codes": self.codes,
            "account_id": self.account_id,
            "customer_gid": self.customer_gid,
            "entity": self.entity,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ResolvedDeal:
        return cls(
            Order.model_validate(raw["order"]),
            dict(raw["codes"]),
            str(raw["account_id"]),
            str(raw["customer_gid"]),
            str(raw["entity"]),
        )


async def read_deal(ctx: HandlerContext, deps: FlowDeps, opportunity_id: str) -> Order:
    raw = await ctx.step("crm.get_deal", lambda _k: dump(deps.crm.get_deal(opportunity_id)))
    return Order.model_validate(raw)


async def read_product_codes(ctx: HandlerContext, deps: FlowDeps, order: Order) -> dict[str, str]:
    """The codes of the deal's products by their CRM id (a gated step; only the deal's kept)."""
    wanted = {i for line in order.lines if (i := line.product.id_in("crm"))}

    async def codes() -> dict[str, str]:
        known = product_code_ids(await deps.crm.list_products())
        return {pid: code for pid, code in known.items() if pid in wanted}

    return dict(await ctx.step("crm.list_products", lambda _k: codes()))


def map_deal(deps: FlowDeps, order: Order, codes: Mapping[str, str]) -> list[MappedOrderLine]:
    return deps.catalog.map_order_lines(order, code_of=codes_by_id(codes))


async def resolved_deal(
    ctx: HandlerContext, deps: FlowDeps, opportunity_id: str, contract_gid: str
) -> ResolvedDeal:
    """What Closed Won recorded for the contract; a contract won before that was recorded is
    read from the CRM once more, in this event's steps, with its kept legal entity."""
    recorded = await in_store(
        recorded_result, deps.runtime, "crm", deal_event_id(opportunity_id), DEAL_RESOLVED
    )
    if recorded is not None:
        return ResolvedDeal.from_json(recorded)
    order = await read_deal(ctx, deps, opportunity_id)
    codes = await read_product_codes(ctx, deps, order)
    account = await read_account(ctx, deps, order.customer.external_ids["crm"])
    account_id = account.external_ids["crm"]
    customer_gid = await in_store(
        deps.xref.ensure_global_id, Kind.CUSTOMER, "crm", account_id, actor="flows"
    )
    entity = await in_store(
        contract_entity, deps, contract_gid, customer_gid, account, order.currency
    )
    return ResolvedDeal(order, codes, account_id, customer_gid, entity.entity_key)


def discount_percent(
    order: Order,
    mapped: MappedOrderLine,
    billing_price: PricePlan | None = None,
    bundle_units: Mapping[str, Decimal] | None = None,
) -> Decimal | None:
    """The percentage off billing's price that makes billing charge the deal line's amount, which
    billing applies to each of the line's prices; None when billing's price already does.

    A line of one licensed billing price (``billing_price``) is measured against what billing
    would charge for it, so a sales price typed below the list price is carried as well as a
    Discount %; a bundle, or a metered line, takes the line's own discount off its list total.
    A bundle whose billing prices are all in ``bundle_units`` is measured against what billing
    charges for its components (a per-line component counted once, not per unit), so a CRM
    bundle price that billing would not charge is refused rather than booked apart from billing.
    Billing takes a percentage with at most two decimals (like Salesforce's Discount field): the
    one that gives the line's amount again, rounded as the CRM rounds it. An amount that no such
    percentage gives, or one above billing's price, is refused with the line named rather than
    billed at another price."""
    line = mapped.line
    where = f"{order.label}: lines[{mapped.index}] ({mapped.code})"
    if (
        billing_price is not None
        and len(mapped.billing) == 1
        and billing_price.usage_type is UsageType.LICENSED
        and billing_price.currency == order.currency
    ):
        quantity = mapped.billing[0][1]
        gross = billing_price.amount_for(quantity)
        unit = billing_price.unit_amount
        shown = unit if -int(unit.as_tuple().exponent) > 2 else unit.quantize(Decimal("0.01"))
        basis = f"billing's price {shown:f} x {quantity}"
    elif (
        bundle_units is not None
        and len(mapped.billing) > 1
        and all(price in bundle_units for price, _ in mapped.billing)
    ):
        gross = sum(
            (billed(bundle_units[p], q, None, order.currency) for p, q in mapped.billing),
            Money.zero(order.currency),
        )
        parts = " + ".join(f"{q} x {p} {bundle_units[p]:f}" for p, q in mapped.billing)
        basis = f"billing's prices for the bundle ({parts})"
    else:
        gross = line.unit_price * line.quantity
        basis = "the line's list total"
    if line.amount == gross:
        return None
    if line.amount > gross or not gross.is_positive():
        raise DataError(
            f"{where}: field 'amount' is {line.amount}; {basis} is {gross}, and billing can "
            "only charge it or less (a discount), so the deal is not submitted"
        )
    exact = (gross - line.amount).amount * 100 / gross.amount
    percent = _two_decimal_percent(gross, line.amount, exact)
    if percent is None:
        raise DataError(
            f"{where}: field 'amount' is {line.amount}, {exact:.4f}% off {basis} ({gross}); "
            "billing takes a percentage with at most two decimals, so the deal is not "
            "submitted (give the line a Discount % instead of a typed price)"
        )
    return percent


CRM_ROUNDINGS = (ROUND_HALF_UP, ROUND_HALF_EVEN)
"""How a CRM may round a discounted line amount: commercially, or half-even as Salesforce does."""


def _two_decimal_percent(gross: Money, amount: Money, exact: Decimal) -> Decimal | None:
    """The two-decimal percentage nearest ``exact`` that gives ``amount`` off ``gross`` under
    a CRM's rounding (986.125 is 986.12 half-even), else None."""
    low = exact.quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
    candidates = sorted((low, low + Decimal("0.01")), key=lambda p: abs(p - exact))
    for rounding in CRM_ROUNDINGS:
        for percent in candidates:
            net = gross.amount * (100 - percent) / 100
            if Money.quantize(net, gross.currency, rounding=rounding) == amount:
                return percent
    return None


async def line_discounts(
    deps: FlowDeps, order: Order, mapped: Sequence[MappedOrderLine]
) -> list[Decimal | None]:
    """Each deal line's percentage off billing's price (``discount_percent``), in line order."""
    bundles = await unit_amounts(deps, order, mapped)
    return [
        discount_percent(
            order,
            line,
            await deps.price_plan(line.billing[0][0]) if line.billing else None,
            bundles,
        )
        for line in mapped
    ]


async def submit_subscription_order(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``crm.opportunity.closed_won``: onboard the customer and create the subscription. The
    customer billed (billing, ERP, invoices) is the deal's bill-to account where it names one;
    the contract stays on the sold-to account in the CRM."""
    opportunity_id = str(event.data["opportunity_id"])
    order = await read_deal(ctx, deps, opportunity_id)
    if order.status.value != "booked":
        raise DataError(f"{order.label}: opportunity {opportunity_id} is not Closed Won")
    codes = await read_product_codes(ctx, deps, order)
    mapped = map_deal(deps, order, codes)
    discounts = await line_discounts(deps, order, mapped)
    sold_to = order.customer.external_ids["crm"]
    # The account billed: the deal's bill-to where it names one, else the buyer's own.
    bill_to = order.bill_to.id_in("crm") if order.bill_to else None
    account = await read_account(ctx, deps, bill_to or sold_to)
    contract_gid = await in_store(
        deps.xref.ensure_global_id, Kind.SUBSCRIPTION, "crm", opportunity_id, actor="flows"
    )
    entity = await in_store(_decided_entity, deps, order, account, contract_gid)
    tax = deps.tax_for(account, entity)
    account = account.model_copy(update={"tax_exemption": tax.exemption})
    await resolve_customer(ctx, deps, account)
    customer = await in_store(customer_record, deps, account, entity)
    served = customer.entity_gid or customer.global_id
    deal = ResolvedDeal(order, codes, sold_to, served, entity.entity_key)
    await in_store(deps.decisions.decide, contract_gid, served, entity.entity_key)
    await ctx.local_step(DEAL_RESOLVED, lambda _k: deal.as_json())
    erp_first = deps.onboarding.erp_first
    if erp_first:
        erp_id = await write_erp_customer(ctx, deps, customer)
        billing_id = await write_billing_customer(ctx, deps, customer)
        await publish_account_ids(ctx, deps, customer, billing_id=billing_id, erp_id=erp_id)
    else:
        billing_id = await write_billing_customer(ctx, deps, customer)
    start = datetime.combine(order.start_date, time(0), tzinfo=UTC)
    subscription = Subscription(
        global_id=contract_gid,
        contract_number=order.number,
        customer=Ref(global_id=customer.global_id, external_ids={"billing": billing_id}),
        currency=order.currency,
        status=SubscriptionStatus.INCOMPLETE,
        items=tuple(
            SubscriptionItem(
                price_plan=Ref(external_ids={"billing": price}),
                quantity=quantity,
                discount_percent=discount,
            )
            for line, discount in zip(mapped, discounts, strict=True)
            for price, quantity in line.billing
        ),
        current_period_start=start,
        current_period_end=start + timedelta(days=30),
        tax_rates=tax.rates,
    )
    created = await ctx.step(
        "billing.create_subscription",
        lambda key: dump(deps.billing.create_subscription(subscription, idempotency_key=key)),
    )
    billing_sub = Subscription.model_validate(created)
    sub_id = billing_sub.external_ids["billing"]
    await in_store(deps.xref.link, contract_gid, "billing", sub_id, actor="flows")
    subscribed = DealSubscribed(opportunity_id, sub_id, billing_sub.status, event.correlation_id)
    await ctx.step(
        "crm.publish_subscription",
        lambda key: published(deps.crm.publish_status([subscribed], idempotency_key=key)),
    )
    links = ContractLinks(
        order.number or opportunity_id, contract_gid, sub_id, opportunity_id, sold_to
    )
    await publish_subscription(
        ctx, deps, links, billing_sub, step="crm.publish_subscription_record"
    )
    if not erp_first:
        # The deal's last writes: while the ERP is away the contract waits here, in order.
        erp_id = await write_erp_customer(ctx, deps, customer)
        await publish_account_ids(ctx, deps, customer, billing_id=billing_id, erp_id=erp_id)


def link_booking(deps: FlowDeps, erp_order: str, sub_id: str) -> None:
    """The ERP booking's global id, linked to the billing subscription it books."""
    order_gid = deps.xref.ensure_global_id(Kind.ORDER, "erp", erp_order, actor="flows")
    deps.xref.link(order_gid, "billing", sub_id, actor="flows")


def _decided_entity(
    deps: FlowDeps, order: Order, account: Customer, contract_gid: str
) -> EntityResolution:
    """The contract's legal entity: the one already decided for it, else the rules' for the
    account buying in the deal's currency (an account may buy through several entities), which
    must invoice in that currency."""
    kept = deps.decisions.decided(contract_gid)
    if kept is not None:
        return deps.entities.as_decided(kept, order.currency)
    entity = deps.entities.resolve(account.model_copy(update={"currency": order.currency}))
    if entity.invoicing_currency != order.currency:
        raise DataError(
            f"{order.label}: field 'currency' is {order.currency}; legal entity "
            f"{entity.entity_key} invoices in {entity.invoicing_currency}"
        )
    return entity


async def activate_subscription(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.subscription.activated``: book the contract in the ERP (revenue setup), as
    Closed Won resolved it, and tell the CRM it is active."""
    sub_id = billed_object_id(event)
    contract_gid = await in_store(deps.xref.global_id_for, Kind.SUBSCRIPTION, "billing", sub_id)
    if contract_gid is None:
        raise DataError(f"billing subscription {sub_id} is not a contract the hub created")
    opportunity_id = await in_store(deps.xref.local_id, contract_gid, "crm")
    if opportunity_id is None:
        raise DataError(f"contract {contract_gid} has no CRM opportunity")
    deal = await resolved_deal(ctx, deps, opportunity_id, contract_gid)
    order = deal.order
    mapped = map_deal(deps, order, deal.codes)
    erp_customer = await in_store(deps.xref.local_id, deal.customer_gid, "erp")
    booking = order.model_copy(
        update={
            "global_id": contract_gid,
            "customer": Ref(global_id=deal.customer_gid, external_ids={"erp": erp_customer or ""}),
            "lines": tuple(
                await erp_lines(deps, order, mapped, await line_discounts(deps, order, mapped))
            ),
        }
    )
    erp_order = await ctx.step(
        "erp.book_order",
        lambda key: deps.erp.book_order(booking, legal_entity=deal.entity, idempotency_key=key),
    )
    await in_store(link_booking, deps, str(erp_order), sub_id)
    current = Subscription.model_validate(
        await ctx.step(
            "billing.get_subscription", lambda _k: dump(deps.billing.get_subscription(sub_id))
        )
    )
    announce.subscription_activated(
        ctx,
        current,
        contract_id=contract_gid,
        opportunity_id=opportunity_id,
        erp_order_id=str(erp_order),
    )
    links = ContractLinks(
        order.number or opportunity_id, contract_gid, sub_id, opportunity_id, deal.account_id
    )
    await publish_subscription(ctx, deps, links, current, step="crm.publish_subscription_active")
    started = current.started_at
    activated = DealActivated(opportunity_id, sub_id, started.date() if started else None)
    await ctx.step(
        "crm.publish_activation",
        lambda key: published(deps.crm.publish_status([activated], idempotency_key=key)),
    )
