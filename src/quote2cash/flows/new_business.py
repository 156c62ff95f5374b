"""New business (SubmitSubscriptionOrder): a Closed Won deal becomes a billing subscription,
then, on billing's activation event, an ERP booking; the CRM hears back at each stage.

Catalog mapping and legal-entity resolution run before any system is written: an unmapped
product or an unresolvable account is an exception with its reason, never half-processed.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from quote2cash.canonical import (
    Order,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from quote2cash.connectors.roles import StatusUpdate
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event
from quote2cash.flows.allocation import erp_lines
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.lifecycle import ContractLinks, publish_subscription
from quote2cash.flows.onboarding import dump, onboard_customer, published, read_account
from quote2cash.masterdata import MappedOrderLine, product_codes
from quote2cash.masterdata.xref import Kind


async def read_deal(ctx: HandlerContext, deps: FlowDeps, opportunity_id: str) -> Order:
    raw = await ctx.step("crm.get_deal", lambda _k: dump(deps.crm.get_deal(opportunity_id)))
    return Order.model_validate(raw)


async def map_deal(deps: FlowDeps, order: Order) -> list[MappedOrderLine]:
    code_of = product_codes(await deps.crm.list_products())
    return deps.catalog.map_order_lines(order, code_of=code_of)


async def submit_subscription_order(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``crm.opportunity.closed_won``: onboard the customer and create the subscription."""
    opportunity_id = str(event.data["opportunity_id"])
    order = await read_deal(ctx, deps, opportunity_id)
    if order.status.value != "booked":
        raise DataError(f"{order.label}: opportunity {opportunity_id} is not Closed Won")
    mapped = await map_deal(deps, order)
    account = await read_account(ctx, deps, order.customer.external_ids["crm"])
    entity = deps.entities.resolve(account)
    if entity.invoicing_currency != order.currency:
        raise DataError(
            f"{order.label}: field 'currency' is {order.currency}; legal entity "
            f"{entity.entity_key} invoices in {entity.invoicing_currency}"
        )
    customer = await onboard_customer(ctx, deps, account, entity)
    contract_gid = deps.xref.ensure_global_id(
        Kind.SUBSCRIPTION, "crm", opportunity_id, actor="flows"
    )
    start = datetime.combine(order.start_date, time(0), tzinfo=UTC)
    subscription = Subscription(
        global_id=contract_gid,
        contract_number=order.number,
        customer=Ref(global_id=customer.global_id, external_ids={"billing": customer.billing_id}),
        currency=order.currency,
        status=SubscriptionStatus.INCOMPLETE,
        items=tuple(
            SubscriptionItem(
                price_plan=Ref(external_ids={"billing": price}),
                quantity=quantity,
            )
            for line in mapped
            for price, quantity in line.billing
        ),
        current_period_start=start,
        current_period_end=start + timedelta(days=30),
    )
    created = await ctx.step(
        "billing.create_subscription",
        lambda key: dump(deps.billing.create_subscription(subscription, idempotency_key=key)),
        system="billing",
    )
    billing_sub = Subscription.model_validate(created)
    sub_id = billing_sub.external_ids["billing"]
    deps.xref.link(contract_gid, "billing", sub_id, actor="flows")
    await ctx.step(
        "crm.publish_subscription",
        lambda key: published(
            deps.crm.publish_status(
                [
                    StatusUpdate(
                        "Opportunity",
                        "Id",
                        opportunity_id,
                        {
                            "Subscription_Id__c": sub_id,
                            "Subscription_Status__c": _crm_status(billing_sub.status),
                            "Hub_Correlation_Id__c": event.correlation_id,
                        },
                    )
                ],
                idempotency_key=key,
            )
        ),
        system="crm",
    )
    links = ContractLinks(
        order.number or opportunity_id, contract_gid, sub_id, opportunity_id, customer.crm_id
    )
    await publish_subscription(
        ctx, deps, links, billing_sub, step="crm.publish_subscription_record"
    )


async def activate_subscription(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.subscription.activated``: book the contract in the ERP (revenue setup) and
    tell the CRM it is active."""
    obj: dict[str, Any] = event.data.get("object") or {}
    sub_id = str(obj.get("id") or event.data.get("object_id"))
    contract_gid = deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", sub_id)
    if contract_gid is None:
        raise DataError(f"billing subscription {sub_id} is not a contract the hub created")
    opportunity_id = deps.xref.local_id(contract_gid, "crm")
    if opportunity_id is None:
        raise DataError(f"contract {contract_gid} has no CRM opportunity")
    order = await read_deal(ctx, deps, opportunity_id)
    mapped = await map_deal(deps, order)
    account = await read_account(ctx, deps, order.customer.external_ids["crm"])
    entity = deps.entities.resolve(account)
    customer_gid = deps.xref.ensure_global_id(
        Kind.CUSTOMER, "crm", account.external_ids["crm"], actor="flows"
    )
    erp_customer = deps.xref.local_id(customer_gid, "erp")
    booking = order.model_copy(
        update={
            "global_id": contract_gid,
            "customer": Ref(global_id=customer_gid, external_ids={"erp": erp_customer or ""}),
            "lines": tuple(await erp_lines(deps, order, mapped)),
        }
    )
    erp_order = await ctx.step(
        "erp.book_order",
        lambda key: deps.erp.book_order(
            booking, legal_entity=entity.entity_key, idempotency_key=key
        ),
        system="erp",
    )
    order_gid = deps.xref.ensure_global_id(Kind.ORDER, "erp", str(erp_order), actor="flows")
    deps.xref.link(order_gid, "billing", sub_id, actor="flows")
    current = Subscription.model_validate(
        await ctx.step(
            "billing.get_subscription", lambda _k: dump(deps.billing.get_subscription(sub_id))
        )
    )
    links = ContractLinks(
        order.number or opportunity_id,
        contract_gid,
        sub_id,
        opportunity_id,
        account.external_ids["crm"],
    )
    await publish_subscription(ctx, deps, links, current, step="crm.publish_subscription_active")
    activated = obj.get("start_date") or obj.get("created")
    await ctx.step(
        "crm.publish_activation",
        lambda key: published(
            deps.crm.publish_status(
                [
                    StatusUpdate(
                        "Opportunity",
                        "Id",
                        opportunity_id,
                        {
                            "Subscription_Id__c": sub_id,
                            "Subscription_Status__c": "Active",
                            "Billing_Start_Date__c": (
                                datetime.fromtimestamp(int(activated), UTC).date().isoformat()
                                if activated
                                else None
                            ),
                        },
                    )
                ],
                idempotency_key=key,
            )
        ),
        system="crm",
    )


def _crm_status(status: SubscriptionStatus) -> str:
    return {
        SubscriptionStatus.ACTIVE: "Active",
        SubscriptionStatus.TRIALING: "Active",
        SubscriptionStatus.PAST_DUE: "Past Due",
        SubscriptionStatus.CANCELED: "Canceled",
        SubscriptionStatus.UNPAID: "Past Due",
    }.get(status, "Pending")
