"""Renewal and cancellation: billing owns the lifecycle; the hub carries it to the ERP and CRM.

* Renewal: billing renews by itself at term end; ``billing.subscription.renewed`` updates the
  contract's state in the CRM (status, new period); the renewal invoice goes through the
  invoice sync.
* Cancellation is requested in the CRM as an amendment to zero seats (as CPQ does): effective on
  or after the current period's end -> at period end; earlier -> now, with billing's prorated
  credit. Billing's final invoice is then a credit (negative total), which billing moves to the
  customer's balance: instead of an ERP invoice it becomes an ERP credit note of the customer
  that pays no invoice (``sync_invoice_or_credit``), equal to the cent; later invoices use it as
  billing applied the balance. ``billing.subscription.canceled`` shows the
  contract and its deal Canceled in the CRM. A cancellation at period end moves no money,
  so the ERP gets nothing (its deferred revenue already stops at the period end).
* ``sync_invoice_or_credit`` and ``sync_payment_or_settled`` wrap the invoice and payment syncs
  for ``billing.invoice.finalized`` / ``billing.payment.succeeded`` (wired by the lead).

The CRM keeps one record of a contract's state per billing subscription (``ContractState`` is
keyed by billing's id), so every write converges on it; the CRM's id of that record is kept in
the xref as system ``crm_subscription``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quote2cash.canonical import (
    Amendment,
    CreditMemo,
    CreditMemoLine,
    CreditReason,
    Ref,
    Subscription,
    SubscriptionStatus,
)
from quote2cash.connectors.roles import ContractState, CrmStatus, DealCanceled, InvoiceStanding
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event
from quote2cash.engine.store_calls import in_store
from quote2cash.flows import announce
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import billed_object_id
from quote2cash.flows.invoices import (
    PUBLISH_INVOICE,
    crm_account_of,
    entity_of,
    link_erp_invoice,
    publish_invoice,
    read_invoice,
    receipt_of,
    standing_of,
    sync_invoice,
    sync_payment,
)
from quote2cash.flows.onboarding import dump, published
from quote2cash.flows.subjects import contract_subject
from quote2cash.masterdata.xref import Kind

log = logging.getLogger("quote2cash.flows.lifecycle")
RENEWED = "billing.subscription.renewed"
CANCELED = "billing.subscription.canceled"
CRM_SUBSCRIPTION = "crm_subscription"


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


def contract_state(links: ContractLinks, sub: Subscription, deps: FlowDeps) -> ContractState:
    """The contract as billing has it now, for the CRM (one record per billing subscription)."""
    customer = sub.customer.id_in("billing")
    customer_gid = deps.xref.global_id_for(Kind.CUSTOMER, "billing", customer) if customer else None
    account = links.account_id or (
        deps.xref.local_id(deps.entity_customers.customer_of(customer_gid), "crm")
        if customer_gid
        else None
    )
    if account is None:
        raise DataError(f"{sub.label}: billing customer {customer} has no CRM account")
    canceled = sub.status is SubscriptionStatus.CANCELED
    ends = sub.cancel_at or (sub.canceled_at if canceled else None)
    return ContractState(
        subscription_id=links.billing_id,
        account_id=account,
        opportunity_id=links.opportunity_id,
        status=sub.status,
        seats=sum(i.quantity or 0 for i in sub.items),
        starts=(sub.started_at or sub.current_period_start).date(),
        ends=(ends or sub.current_period_end).date(),
    )


async def publish_subscription(
    ctx: HandlerContext,
    deps: FlowDeps,
    links: ContractLinks,
    sub: Subscription,
    *,
    step: str,
) -> None:
    """The contract's state in the CRM; a canceled contract also shows its deal Canceled."""
    updates: list[CrmStatus] = [await in_store(contract_state, links, sub, deps)]
    if sub.status is SubscriptionStatus.CANCELED:
        updates.append(DealCanceled(links.opportunity_id))
    ids = await ctx.step(
        step,
        lambda key: published(deps.crm.publish_status(updates, idempotency_key=key)),
    )
    if ids and ids[0]:
        await in_store(
            deps.xref.link, links.global_id, CRM_SUBSCRIPTION, str(ids[0]), actor="flows"
        )


# --- billing's subscription events ------------------------------------------------------------


async def mirror_subscription(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.subscription.{amended,renewed,cancel_scheduled,canceled}``: the CRM sees
    billing's current state (read now, so a late event never rolls the CRM back)."""
    sub_id = billed_object_id(event)
    gid = await in_store(deps.xref.global_id_for, Kind.SUBSCRIPTION, "billing", sub_id)
    if gid is None:
        log.info("billing subscription %s is not a hub contract; recorded only", sub_id)
        return
    contract = str(event.data.get("contract_number") or gid)
    links = await in_store(contract_links, deps, sub_id, contract)
    sub = Subscription.model_validate(
        await ctx.step(
            "billing.get_subscription",
            lambda _k: dump(deps.billing.get_subscription(sub_id)),
        )
    )
    if event.type == RENEWED:
        announce.subscription_renewed(ctx, sub, contract_id=gid)
    elif event.type == CANCELED:
        announce.subscription_cancelled(ctx, sub, contract_id=gid)
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
        )
    )


# --- credit invoices and payments settled without money ----------------------------------------


async def sync_invoice_or_credit(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.invoice.finalized``: a credit (negative total: immediate cancellation, seats
    removed with ``always_invoice``) becomes an ERP credit note; anything else the invoice sync."""
    invoice = await read_invoice(ctx, deps, billed_object_id(event))
    if not invoice.total.is_negative():
        await sync_invoice(ctx, event, deps)
        return
    await credit_invoice(ctx, event, deps)


async def sync_payment_or_settled(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.payment.succeeded``: cash billing collected is applied in the ERP (the payment
    sync); an invoice settled with no cash (a credit, or wholly from the customer's balance,
    which the invoice sync already applied in the ERP) moves nothing there. The CRM shows it
    paid either way."""
    invoice = await read_invoice(ctx, deps, billed_object_id(event))
    if invoice.amount_paid is not None and invoice.amount_paid.is_positive():
        await sync_payment(ctx, event, deps)
        return
    account = await in_store(crm_account_of, deps, invoice)
    await publish_invoice(
        ctx, deps, invoice, account, InvoiceStanding.PAID, step="crm.publish_paid"
    )


async def credit_invoice(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """A billing credit invoice (negative total) as an ERP credit note of the customer that pays
    no invoice: billing moved it to the customer's balance, for the next invoices to use (the
    invoice sync applies it to each as billing did)."""
    invoice_id = billed_object_id(event)
    invoice = await read_invoice(ctx, deps, invoice_id)
    customer = invoice.customer.external_ids["billing"]
    customer_gid = await in_store(deps.xref.global_id_for, Kind.CUSTOMER, "billing", customer)
    erp_customer = await in_store(deps.xref.local_id, customer_gid, "erp") if customer_gid else None
    if customer_gid is None or erp_customer is None:
        raise DataError(f"{invoice.label}: billing customer {customer} has no ERP customer")
    entity_key = await entity_of(ctx, deps, invoice, customer_gid, erp_customer)
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
    )
    announce.credit_note_issued(
        ctx, invoice, customer_id=customer_gid, erp_credit_note_id=str(credit_id["erp_id"])
    )
    await in_store(link_erp_invoice, deps, invoice_id, str(credit_id["erp_id"]))
    await publish_invoice(
        ctx,
        deps,
        invoice,
        await in_store(crm_account_of, deps, invoice),
        standing_of(invoice),
        step=PUBLISH_INVOICE,
    )
