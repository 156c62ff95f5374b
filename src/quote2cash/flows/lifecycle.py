"""Renewal and cancellation: billing owns the lifecycle; the hub carries it to the ERP and CRM.

* Renewal: billing renews by itself at term end; ``billing.subscription.renewed`` updates the CRM
  Subscription__c (status, new period) and the renewal invoice goes through the invoice sync.
* Cancellation is requested in the CRM as an amendment to zero seats (as CPQ does): effective on
  or after the current period's end -> at period end; earlier -> now, with billing's prorated
  credit. Billing's final invoice is then a credit (negative total), which billing moves to the
  customer's balance: instead of an ERP invoice it becomes an ERP credit note of the customer
  that pays no invoice (``sync_invoice_or_credit``), equal to the cent; later invoices use it as
  billing applied the balance. ``billing.subscription.canceled`` marks the
  CRM Subscription__c and Opportunity Canceled. A cancellation at period end moves no money,
  so the ERP gets nothing (its deferred revenue already stops at the period end).
* ``sync_invoice_or_credit`` and ``sync_payment_or_settled`` wrap the invoice and payment syncs
  for ``billing.invoice.finalized`` / ``billing.payment.succeeded`` (wired by the lead).

The CRM's Subscription__c is upserted by its external id Billing_Subscription_Id__c, so every
write converges on one record; its Id is kept in the xref as system ``crm_subscription``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from quote2cash.canonical import (
    Amendment,
    CreditMemo,
    CreditMemoLine,
    CreditReason,
    Ref,
    Subscription,
    SubscriptionStatus,
)
from quote2cash.connectors.roles import StatusUpdate
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.invoices import (
    crm_account_of,
    entity_of,
    publish_invoice,
    read_invoice,
    receipt_of,
    sync_invoice,
    sync_payment,
)
from quote2cash.flows.onboarding import dump, published
from quote2cash.flows.subjects import contract_subject
from quote2cash.masterdata.xref import Kind

log = logging.getLogger("quote2cash.flows.lifecycle")
CRM_SUBSCRIPTION = "crm_subscription"
CRM_STATUS = {
    SubscriptionStatus.ACTIVE: "Active",
    SubscriptionStatus.TRIALING: "Active",
    SubscriptionStatus.PAST_DUE: "Past Due",
    SubscriptionStatus.UNPAID: "Past Due",
    SubscriptionStatus.CANCELED: "Canceled",
    SubscriptionStatus.INCOMPLETE_EXPIRED: "Expired",
}


@dataclass(frozen=True)
class ContractLinks:
    """A contract's ids: global id, billing subscription, CRM opportunity and account."""

    contract: str
    global_id: str
    billing_id: str
    opportunity_id: str
    account_id: str | None


def contract_links(deps: FlowDeps, billing_id: str | None, contract: str) -> ContractLinks:
    """Resolve from the xref (billing id) or the contract's deal event; DataError if unknown."""
    gid = deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", billing_id) if billing_id else None
    if gid is None:
        deal = deps.runtime.log.history(contract_subject(contract), ["crm.opportunity.closed_won"])
        opportunity = deal[-1].data.get("opportunity_id") if deal else None
        if opportunity:
            gid = deps.xref.global_id_for(Kind.SUBSCRIPTION, "crm", str(opportunity))
    billing = deps.xref.local_id(gid, "billing") if gid else None
    opportunity_id = deps.xref.local_id(gid, "crm") if gid else None
    if gid is None or billing is None or opportunity_id is None:
        raise DataError(
            f"contract {contract}: the hub knows no billing subscription and CRM opportunity "
            f"for it (billing id {billing_id or '-'})"
        )
    return ContractLinks(contract, gid, billing, opportunity_id, None)


def subscription_update(links: ContractLinks, sub: Subscription, deps: FlowDeps) -> StatusUpdate:
    """The CRM Subscription__c as billing has it now (upserted by Billing_Subscription_Id__c)."""
    customer = sub.customer.id_in("billing")
    customer_gid = deps.xref.global_id_for(Kind.CUSTOMER, "billing", customer) if customer else None
    account = links.account_id or (
        deps.xref.local_id(customer_gid, "crm") if customer_gid else None
    )
    if account is None:
        raise DataError(f"{sub.label}: billing customer {customer} has no CRM account")
    seats = sum(i.quantity or 0 for i in sub.items)
    canceled = sub.status is SubscriptionStatus.CANCELED
    ends = sub.cancel_at or (sub.canceled_at if canceled else None)
    fields: dict[str, Any] = {
        "Account__c": account,
        "Opportunity__c": links.opportunity_id,
        "Status__c": CRM_STATUS.get(sub.status, "Pending"),
        "Quantity__c": seats,
        "Start_Date__c": _day(sub.started_at or sub.current_period_start),
        "End_Date__c": _day(ends or sub.current_period_end),
    }
    return StatusUpdate("Subscription__c", "Billing_Subscription_Id__c", links.billing_id, fields)


def _day(when: Any) -> str:
    return str(when.date().isoformat())


async def publish_subscription(
    ctx: HandlerContext,
    deps: FlowDeps,
    links: ContractLinks,
    sub: Subscription,
    *,
    step: str,
) -> None:
    """Upsert Subscription__c; a canceled contract also shows Canceled on its Opportunity."""
    updates = [subscription_update(links, sub, deps)]
    if sub.status is SubscriptionStatus.CANCELED:
        updates.append(
            StatusUpdate(
                "Opportunity", "Id", links.opportunity_id, {"Subscription_Status__c": "Canceled"}
            )
        )
    ids = await ctx.step(
        step,
        lambda key: published(deps.crm.publish_status(updates, idempotency_key=key)),
        system="crm",
    )
    if ids and ids[0]:
        deps.xref.link(links.global_id, CRM_SUBSCRIPTION, str(ids[0]), actor="flows")


# --- billing's subscription events ------------------------------------------------------------


async def mirror_subscription(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.subscription.{amended,renewed,cancel_scheduled,canceled}``: the CRM sees
    billing's current state (read now, so a late event never rolls the CRM back)."""
    obj: dict[str, Any] = event.data.get("object") or {}
    sub_id = str(obj.get("id") or event.data.get("object_id") or "")
    gid = deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", sub_id) if sub_id else None
    if gid is None:
        log.info("billing subscription %s is not a hub contract; recorded only", sub_id)
        return
    contract = str((obj.get("metadata") or {}).get("contract_number") or gid)
    links = contract_links(deps, sub_id, contract)
    sub = Subscription.model_validate(
        await ctx.step(
            "billing.get_subscription",
            lambda _k: dump(deps.billing.get_subscription(sub_id)),
            system="billing",
        )
    )
    await publish_subscription(ctx, deps, links, sub, step="crm.publish_subscription")


# --- cancellation ------------------------------------------------------------------------------


async def cancel_contract(
    ctx: HandlerContext,
    deps: FlowDeps,
    links: ContractLinks,
    current: Subscription,
    amendment: Amendment,
) -> Subscription:
    """Cancel in billing: at period end if the request is effective then or later, else now
    (billing credits the unused time on a final invoice, which the invoice sync credits)."""
    at_period_end = amendment.effective_at.date() >= current.current_period_end.date()
    return Subscription.model_validate(
        await ctx.step(
            "billing.cancel",
            lambda key: dump(
                deps.billing.cancel(
                    links.billing_id, at_period_end=at_period_end, idempotency_key=key
                )
            ),
            system="billing",
        )
    )


# --- credit invoices and payments settled without money ----------------------------------------


async def sync_invoice_or_credit(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.invoice.finalized``: a credit (negative total: immediate cancellation, seats
    removed with ``always_invoice``) becomes an ERP credit note; anything else the invoice sync."""
    obj: dict[str, Any] = event.data.get("object") or {}
    if int(obj.get("total") or 0) >= 0:
        await sync_invoice(ctx, event, deps)
        return
    await credit_invoice(ctx, event, deps)


async def sync_payment_or_settled(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.payment.succeeded``: cash billing collected is applied in the ERP (the payment
    sync); an invoice settled with no cash (a credit, or wholly from the customer's balance,
    which the invoice sync already applied in the ERP) moves nothing there. The CRM shows it
    paid either way."""
    obj: dict[str, Any] = event.data.get("object") or {}
    invoice = await read_invoice(ctx, deps, str(obj.get("id") or event.data.get("object_id")))
    if invoice.amount_paid is not None and invoice.amount_paid.is_positive():
        await sync_payment(ctx, event, deps)
        return
    account = crm_account_of(deps, invoice)
    await publish_invoice(
        ctx, deps, invoice, account, status="Paid", step="crm.publish_paid", balance=Decimal(0)
    )


async def credit_invoice(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """A billing credit invoice (negative total) as an ERP credit note of the customer that pays
    no invoice: billing moved it to the customer's balance, for the next invoices to use (the
    invoice sync applies it to each as billing did)."""
    obj: dict[str, Any] = event.data.get("object") or {}
    invoice_id = str(obj.get("id") or event.data.get("object_id"))
    invoice = await read_invoice(ctx, deps, invoice_id)
    customer = invoice.customer.external_ids["billing"]
    customer_gid = deps.xref.global_id_for(Kind.CUSTOMER, "billing", customer)
    erp_customer = deps.xref.local_id(customer_gid, "erp") if customer_gid else None
    if customer_gid is None or erp_customer is None:
        raise DataError(f"{invoice.label}: billing customer {customer} has no ERP customer")
    entity_key = await entity_of(deps, invoice, customer_gid, erp_customer)
    if all(line.amount.is_negative() for line in invoice.lines):
        lines = tuple(
            CreditMemoLine(
                description=line.description,
                amount=-line.amount,
                tax=-line.tax if line.tax is not None else None,
                tax_rate=line.tax_rate,
            )
            for line in invoice.lines
        )
    else:
        lines = (
            CreditMemoLine(
                description=f"Credit {invoice.number or invoice_id} (net of its lines)",
                amount=-invoice.subtotal,
                billed_lines=len(invoice.lines),
            ),
        )
    memo = CreditMemo(
        number=invoice.number,
        external_ids={"billing": invoice_id},
        customer=Ref(global_id=customer_gid, external_ids={"erp": erp_customer}),
        currency=invoice.currency,
        reason=CreditReason.ORDER_CHANGE,
        issued_at=invoice.issued_at or event.time,
        lines=lines,
        tax=-invoice.tax,
        total=-invoice.total,
    )
    credit_id = await ctx.step(
        "erp.post_customer_credit",
        lambda key: receipt_of(
            deps.erp.post_customer_credit(memo, legal_entity=entity_key, idempotency_key=key)
        ),
        system="erp",
    )
    invoice_gid = deps.xref.ensure_global_id(Kind.INVOICE, "billing", invoice_id, actor="flows")
    deps.xref.link(invoice_gid, "erp", str(credit_id["erp_id"]), actor="flows")
    paid = invoice.status.value == "paid"
    await publish_invoice(
        ctx,
        deps,
        invoice,
        crm_account_of(deps, invoice),
        status="Paid" if paid else "Open",
        step="crm.publish_invoice",
        balance=Decimal(0) if paid else None,
    )
