"""Invoice sync and payment sync: billing's finalized invoices are posted in the ERP, deferred
over their service period, equal to the cent; payments are applied; the CRM sees the status.

An invoice is posted in the legal entity decided for its contract at Closed Won (never resolved
again from the ERP's customer record, which carries no currency).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from quote2cash.canonical import (
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    Payment,
    PaymentStatus,
    Ref,
    Subscription,
)
from quote2cash.connectors.roles import (
    CrmStatus,
    DealInvoiceStanding,
    InvoiceStanding,
    InvoiceState,
    InvoiceStatusReport,
    StatusResult,
)
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, MappingError
from quote2cash.engine.events import Event
from quote2cash.engine.store_calls import in_store
from quote2cash.flows import announce
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import billed_object_id, correlation_of_subject
from quote2cash.flows.onboarding import dump, published
from quote2cash.flows.subjects import CONTRACT_PREFIX, contract_subject
from quote2cash.masterdata.xref import Kind

log = logging.getLogger("quote2cash.flows.invoices")
INVOICE_WAIT = timedelta(days=3)
"""How long a payment, refund or credit may wait for its invoice to be posted in the ERP."""


def erp_invoice_key(invoice_id: str) -> str:
    """Released when billing's invoice ``invoice_id`` is posted in the ERP."""
    return f"erp-invoice-posted:{invoice_id}"


async def sync_invoice(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.invoice.finalized``: post it in the ERP and show it in the CRM."""
    invoice_id = billed_object_id(event)
    invoice = await read_invoice(ctx, deps, invoice_id)
    customer_gid, erp_customer, crm_account = await in_store(_invoice_parties, deps, invoice)
    entity_key = await entity_of(ctx, deps, invoice, customer_gid, erp_customer)
    lines = [await _erp_line(deps, invoice, line) for line in invoice.lines]
    erp_invoice = invoice.model_copy(
        update={
            "customer": Ref(global_id=customer_gid, external_ids={"erp": erp_customer}),
            "lines": tuple(lines),
        }
    )
    posted = await ctx.step(
        "erp.post_invoice",
        lambda key: receipt_of(
            deps.erp.post_invoice(erp_invoice, legal_entity=entity_key, idempotency_key=key)
        ),
    )
    if Decimal(posted["total"]) != invoice.total.amount:
        raise DataError(
            f"{invoice.label}: ERP posted {posted['total']} but billing says {invoice.total}"
        )
    await in_store(link_erp_invoice, deps, invoice_id, str(posted["erp_id"]))
    announce.invoice_posted(
        ctx, invoice, customer_id=customer_gid, erp_invoice_id=str(posted["erp_id"])
    )
    credit = invoice.credit_applied
    if credit is not None and credit.is_positive():
        await ctx.step(
            "erp.apply_customer_credit",
            lambda key: deps.erp.apply_customer_credit(
                posted["erp_id"], credit, idempotency_key=key
            ),
        )
    # What billing says of it: an invoice settled at once from the customer's credit is Paid
    # (its no-cash payment event may have been heard first; Open must not overwrite it).
    await publish_invoice(
        ctx, deps, invoice, crm_account, standing_of(invoice), step=PUBLISH_INVOICE
    )
    ctx.release(erp_invoice_key(invoice_id))


def _invoice_parties(deps: FlowDeps, invoice: Invoice) -> tuple[str, str, str]:
    """The invoice's customer: its global id, its ERP customer and its CRM account."""
    customer_gid = deps.xref.global_id_for(
        Kind.CUSTOMER, "billing", invoice.customer.external_ids["billing"]
    )
    if customer_gid is None:
        raise DataError(f"{invoice.label}: billing customer is not one the hub onboarded")
    erp_customer = deps.xref.local_id(customer_gid, "erp")
    crm_account = deps.xref.local_id(deps.entity_customers.customer_of(customer_gid), "crm")
    if erp_customer is None or crm_account is None:
        raise DataError(f"{invoice.label}: customer {customer_gid} lacks its ERP or CRM id")
    return customer_gid, erp_customer, crm_account


def link_erp_invoice(deps: FlowDeps, invoice_id: str, erp_id: str) -> None:
    """Billing's invoice (or credit) and the ERP document posting it, under one global id."""
    invoice_gid = deps.xref.ensure_global_id(Kind.INVOICE, "billing", invoice_id, actor="flows")
    deps.xref.link(invoice_gid, "erp", erp_id, actor="flows")


async def sync_payment(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.payment.succeeded``: apply the cash billing collected (``amount_paid``, never
    the credit balance it used) to the ERP invoice; the CRM shows it paid."""
    invoice_id = billed_object_id(event)
    invoice = await read_invoice(ctx, deps, invoice_id)
    erp_invoice = await _erp_invoice_of(ctx, deps, invoice_id)
    paid = invoice.amount_paid
    if paid is None or not paid.is_positive():
        raise DataError(
            f"{invoice.label}: billing reports it paid with no cash collected (amount_paid "
            f"{paid}); nothing to apply in the ERP"
        )
    payment = Payment(
        customer=invoice.customer,
        invoice=Ref(external_ids={"billing": invoice_id, "erp": erp_invoice}),
        amount=paid,
        status=PaymentStatus.SUCCEEDED,
        created_at=event.time,
    )
    await ctx.step(
        "erp.apply_payment",
        lambda key: deps.erp.apply_payment(
            payment, erp_invoice_id=erp_invoice, idempotency_key=key
        ),
    )
    announce.payment_received(
        ctx,
        invoice,
        payment,
        customer_id=await in_store(_customer_of, deps, invoice),
        erp_invoice_id=erp_invoice,
    )
    account = await in_store(crm_account_of, deps, invoice)
    await publish_invoice(
        ctx, deps, invoice, account, InvoiceStanding.PAID, step="crm.publish_paid"
    )


async def record_failed_payment(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.payment.failed``: nothing moves in the ERP; the CRM sees the balance, Overdue
    only once the invoice is past its due date. A failure heard after the invoice was paid
    (a declined card, then a good one in the same second) is stale and changes nothing."""
    invoice_id = billed_object_id(event)
    invoice = await read_invoice(ctx, deps, invoice_id)
    if invoice.status is not InvoiceStatus.OPEN or not invoice.amount_due.is_positive():
        log.info("%s is %s now; the failed payment is past", invoice.label, invoice.status)
        return
    account = await in_store(crm_account_of, deps, invoice)
    standing = InvoiceStanding.OVERDUE if is_past_due(invoice, event.time) else InvoiceStanding.OPEN
    await publish_invoice(ctx, deps, invoice, account, standing, step="crm.publish_failed")


async def mark_overdue(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.invoice.overdue``: an invoice still open after its due date shows Overdue with
    its balance in the CRM (one paid since is left as the payment sync published it)."""
    invoice_id = billed_object_id(event)
    invoice = await read_invoice(ctx, deps, invoice_id)
    if invoice.status is not InvoiceStatus.OPEN or not invoice.amount_due.is_positive():
        log.info("%s is %s; not overdue any more", invoice.label, invoice.status)
        return
    account = await in_store(crm_account_of, deps, invoice)
    await publish_invoice(
        ctx, deps, invoice, account, InvoiceStanding.OVERDUE, step="crm.publish_overdue"
    )


def is_past_due(invoice: Invoice, at: datetime) -> bool:
    """Unpaid after its due date; one without a due date (charged automatically) is never
    overdue: a declined charge leaves it open for billing's retries."""
    if invoice.status is not InvoiceStatus.OPEN or not invoice.amount_due.is_positive():
        return False
    return invoice.due_date is not None and invoice.due_date < at.astimezone(UTC).date()


async def sync_refund(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``billing.payment.refunded``: billing gave money back on a payment of an invoice, so the
    ERP reverses that much of the payment (the invoice owes it again) and the CRM shows the
    invoice Refunded or Partially Refunded with the ERP's balance.

    The refund is read from billing now (cumulative), so redelivered or reordered refund events
    converge on the same ERP state; the ERP reverses only what it has not reversed yet."""
    payment_id = billed_object_id(event)
    payment = Payment.model_validate(
        await ctx.step(
            "billing.get_payment",
            lambda _k: dump(deps.billing.get_payment(payment_id)),
        )
    )
    invoice_id = payment.invoice.id_in("billing") if payment.invoice else None
    if payment.amount_refunded is None or invoice_id is None:
        log.info("payment %s: no refunded invoice payment (recorded only)", payment_id)
        return
    if await in_store(deps.xref.global_id_for, Kind.INVOICE, "billing", invoice_id) is None:
        log.info("payment %s paid invoice %s, which the hub never posted", payment_id, invoice_id)
        return
    invoice = await read_invoice(ctx, deps, invoice_id)
    if not event.subject.startswith(CONTRACT_PREFIX) and await _route_to_contract(
        ctx, event, deps, invoice
    ):
        return
    erp_invoice = await _erp_invoice_of(ctx, deps, invoice_id)
    await ctx.step(
        "erp.reverse_payment",
        lambda key: deps.erp.reverse_payment(
            payment, erp_invoice_id=erp_invoice, idempotency_key=key
        ),
    )
    erp_status = await ctx.step(
        "erp.invoice_status",
        lambda _k: _due(deps.erp.invoice_status(erp_invoice)),
    )
    announce.payment_reversed(
        ctx,
        invoice,
        payment,
        customer_id=await in_store(_customer_of, deps, invoice),
        erp_invoice_id=erp_invoice,
        balance=Money(Decimal(erp_status["amount_due"]), invoice.currency),
    )
    account = await in_store(crm_account_of, deps, invoice)
    full = payment.amount_refunded >= payment.amount
    await publish_invoice(
        ctx,
        deps,
        invoice,
        account,
        InvoiceStanding.REFUNDED if full else InvoiceStanding.PARTIALLY_REFUNDED,
        step="crm.publish_refund",
        balance=Money(Decimal(erp_status["amount_due"]), invoice.currency),
    )


async def _route_to_contract(
    ctx: HandlerContext, event: Event, deps: FlowDeps, invoice: Invoice
) -> bool:
    """Send a refund heard outside its contract (Stripe's charge carries no subscription) to the
    contract of the invoice it refunds: handled there in order after that invoice's payment, and
    in the deal's trace (its correlation id). False when the invoice belongs to no contract."""
    sub_id = invoice.subscription.id_in("billing") if invoice.subscription else None
    if sub_id is None:
        return False
    sub = Subscription.model_validate(
        await ctx.step(
            "billing.get_subscription",
            lambda _k: dump(deps.billing.get_subscription(sub_id)),
        )
    )
    if not sub.contract_number:
        return False
    subject = contract_subject(sub.contract_number)
    correlation = await in_store(correlation_of_subject, deps.runtime, subject)
    routed = ctx.emit(
        event.type,
        subject,
        {**event.data, "routed_from": event.id},
        key="contract",
        correlation_id=correlation,
    )
    log.info("refund event %s goes to %s as %s", event.id, subject, routed.id)
    return True


async def _due(awaitable: Awaitable[InvoiceStatusReport]) -> dict[str, str]:
    report = await awaitable
    return {"status": report.status.value, "amount_due": str(report.amount_due.amount)}


async def read_invoice(ctx: HandlerContext, deps: FlowDeps, invoice_id: str) -> Invoice:
    """Billing's invoice, read once per event (a step, so a re-run reuses the reading)."""
    return Invoice.model_validate(
        await ctx.step("billing.get_invoice", lambda _k: dump(deps.billing.get_invoice(invoice_id)))
    )


async def entity_of(
    ctx: HandlerContext, deps: FlowDeps, invoice: Invoice, customer_gid: str, erp_customer: str
) -> str:
    """The legal entity decided for the invoice's contract (else its customer's latest); for a
    customer onboarded before decisions were kept, the ERP's customer master completed with the
    invoice's currency, which it does not carry."""
    kept = await in_store(_decided_for, deps, invoice, customer_gid)
    if kept is not None:
        return kept
    master = Customer.model_validate(
        await ctx.step("erp.get_customer", lambda _k: dump(deps.erp.get_customer(erp_customer)))
    )
    if master.currency is None:
        master = master.model_copy(update={"currency": invoice.currency})
    return deps.entities.resolve(master).entity_key


def _decided_for(deps: FlowDeps, invoice: Invoice, customer_gid: str) -> str | None:
    """The legal entity decided for the invoice's contract, else for its customer."""
    sub_id = invoice.subscription.id_in("billing") if invoice.subscription else None
    contract = deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", sub_id) if sub_id else None
    for gid in (contract, customer_gid):
        kept = deps.decisions.decided(gid) if gid else None
        if kept is not None:
            return kept
    return None


def erp_invoice_id(deps: FlowDeps, invoice_id: str) -> str | None:
    """The ERP document that posted billing's invoice (None: not posted by the hub yet)."""
    gid = deps.xref.global_id_for(Kind.INVOICE, "billing", invoice_id)
    return deps.xref.local_id(gid, "erp") if gid else None


async def _erp_invoice_of(ctx: HandlerContext, deps: FlowDeps, invoice_id: str) -> str:
    erp_id = await in_store(erp_invoice_id, deps, invoice_id)
    if erp_id is None:
        wait_for_erp_invoice(ctx, invoice_id, f"{ctx.event.type} {ctx.event.id}")
    return erp_id


def wait_for_erp_invoice(ctx: HandlerContext, invoice_id: str, what: str) -> NoReturn:
    """Billing told of money on an invoice before the hub posted it: park until the invoice
    sync posts it (arrival order is not business order)."""
    ctx.park(
        erp_invoice_key(invoice_id),
        f"{what}: invoice {invoice_id} is not posted in the ERP yet",
        deadline=INVOICE_WAIT,
    )


def _customer_of(deps: FlowDeps, invoice: Invoice) -> str | None:
    """The hub's global id of the invoice's billing customer (None: not one it onboarded)."""
    billing_id = invoice.customer.id_in("billing")
    return deps.xref.global_id_for(Kind.CUSTOMER, "billing", billing_id) if billing_id else None


def crm_account_of(deps: FlowDeps, invoice: Invoice) -> str:
    gid = deps.xref.global_id_for(
        Kind.CUSTOMER, "billing", invoice.customer.external_ids["billing"]
    )
    account = deps.xref.local_id(deps.entity_customers.customer_of(gid), "crm") if gid else None
    if account is None:
        raise DataError(f"{invoice.label}: billing customer has no CRM account")
    return account


async def _erp_line(deps: FlowDeps, invoice: Invoice, line: InvoiceLine) -> InvoiceLine:
    price_id = line.price_plan.external_ids.get("billing") if line.price_plan else None
    key = await deps.lookup_key_of(price_id) if price_id else None
    item = deps.erp_item_for_price(key) if key else None
    if item is None:
        raise MappingError(
            f"{invoice.label}: line {line.description!r} (price {price_id or '-'}, lookup key "
            f"{key or '-'}) maps to no ERP item in the catalog"
        )
    return line.model_copy(update={"product": Ref(external_ids={"item_code": item})})


async def receipt_of(awaitable: Any) -> dict[str, str]:
    """An ERP posting receipt as a step result (JSON: id, number, total)."""
    receipt = await awaitable
    return {"erp_id": receipt.erp_id, "number": receipt.number, "total": str(receipt.total.amount)}


PUBLISH_INVOICE = "crm.publish_invoice"


def standing_of(invoice: Invoice) -> InvoiceStanding:
    """Billing's word on a finalized invoice: paid (even from the customer's credit) or open."""
    return InvoiceStanding.PAID if invoice.status is InvoiceStatus.PAID else InvoiceStanding.OPEN


async def publish_invoice(
    ctx: HandlerContext,
    deps: FlowDeps,
    invoice: Invoice,
    account: str,
    standing: InvoiceStanding,
    *,
    step: str,
    balance: Money | None = None,
) -> None:
    """The invoice's standing in the CRM, and on its deal when it bills a hub contract; its
    balance is ``balance``, else nothing when paid, else what billing says is due."""
    if balance is None:
        paid = standing is InvoiceStanding.PAID
        balance = Money.zero(invoice.currency) if paid else invoice.amount_due
    state = InvoiceState(
        number=invoice.number or invoice.external_ids["billing"],
        account_id=account,
        total=invoice.total,
        balance=balance,
        standing=standing,
        due_date=invoice.due_date,
    )
    updates: list[CrmStatus] = [state]
    opportunity = await in_store(_opportunity_of, deps, invoice)
    if opportunity is not None:
        updates.append(DealInvoiceStanding(opportunity, standing))
    await ctx.step(
        step,
        lambda key: _invoice_published(deps.crm.publish_status(updates, idempotency_key=key)),
    )


async def _invoice_published(answer: Awaitable[list[StatusResult]]) -> dict[str, str | None]:
    """The CRM's ids of the invoice record and of the deal (GetInvoiceStatus finds it by them)."""
    ids = await published(answer)
    return {"crm_invoice_id": ids[0], "crm_deal_id": ids[1] if len(ids) > 1 else None}


def _opportunity_of(deps: FlowDeps, invoice: Invoice) -> str | None:
    """The CRM opportunity of the contract an invoice bills (None: no contract of the hub's)."""
    sub_id = invoice.subscription.id_in("billing") if invoice.subscription else None
    gid = deps.xref.global_id_for(Kind.SUBSCRIPTION, "billing", sub_id) if sub_id else None
    return deps.xref.local_id(gid, "crm") if gid else None
