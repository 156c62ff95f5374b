"""A store holding one deal the engine really processed: events logged, handlers run by the
worker (steps recorded through their systems' gates), xrefs linked, one business exception."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.masterdata.xref import Kind, XrefStore

CONTRACT = "C-CON-0001"
OPPORTUNITY = "006000000000001AAA"
ACCOUNT = "001000000000001AAA"
CUSTOMER = "cus_Console1"
SUBSCRIPTION = "sub_Console1"
INVOICE = "in_Console1"
INVOICE_NUMBER = "INV-CON-0001"


@dataclass(frozen=True)
class Deal:
    correlation_id: str
    closed_won: str
    invoice_event: str
    failed_payment: str
    account_update: str


def deal_registry(xref: XrefStore) -> Registry:
    registry = Registry()

    async def closed_won(ctx: HandlerContext, event: Event) -> None:
        await ctx.step(
            "crm.get_deal",
            lambda _k: {"opportunity": OPPORTUNITY, "account": ACCOUNT},
        )
        await ctx.step("billing.create_customer", lambda _k: {"id": CUSTOMER})
        await ctx.step(
            "billing.create_subscription",
            lambda _k: {"id": SUBSCRIPTION},
        )
        await ctx.step("erp.create_sales_order", lambda _k: {"id": "41"})
        customer = xref.ensure_global_id(Kind.CUSTOMER, "crm", ACCOUNT)
        xref.link(customer, "billing", CUSTOMER)
        xref.link(customer, "erp", "party.party,7")
        subscription = xref.ensure_global_id(Kind.SUBSCRIPTION, "billing", SUBSCRIPTION)
        xref.link(subscription, "crm", OPPORTUNITY)

    async def invoice_finalized(ctx: HandlerContext, event: Event) -> None:
        posted = await ctx.step("erp.post_invoice", lambda _k: {"erp_id": "93"})
        invoice = xref.ensure_global_id(Kind.INVOICE, "billing", INVOICE)
        xref.link(invoice, "erp", str(posted["erp_id"]))
        await ctx.step(
            "crm.publish_invoice",
            lambda _k: {"number": INVOICE_NUMBER, "billing_id": INVOICE},
        )

    async def payment_failed(ctx: HandlerContext, event: Event) -> None:
        raise DataError(
            f"payment for invoice {INVOICE_NUMBER}: field 'payment_method' is missing",
            system="billing",
        )

    async def account_updated(ctx: HandlerContext, event: Event) -> None:
        if not event.data.get("country"):
            raise DataError(
                f"account {ACCOUNT}: field 'country' is missing; expected an ISO 3166 code",
                system="crm",
            )
        await ctx.step("erp.update_customer", lambda _k: {"party": "party.party,7"})

    registry.add("crm.account.updated", account_updated, systems=("erp",))
    registry.add("crm.opportunity.closed_won", closed_won, systems=("crm", "billing", "erp"))
    registry.add("billing.invoice.finalized", invoice_finalized, systems=("erp", "crm"))
    registry.add("billing.payment.failed", payment_failed, systems=("billing",))
    return registry


async def populate(runtime: Runtime) -> Deal:
    """Log a deal's three events on its contract and let the worker run them."""
    subject = f"contract:{CONTRACT}"
    won = new_event(
        "crm.opportunity.closed_won",
        subject,
        {"opportunity_id": OPPORTUNITY, "account_id": ACCOUNT, "contract": CONTRACT},
        source="crm",
        time=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    )
    cid = won.correlation_id
    invoice = new_event(
        "billing.invoice.finalized",
        subject,
        {"id": INVOICE, "number": INVOICE_NUMBER, "total": "147.00", "currency": "USD"},
        source="billing",
        correlation_id=cid,
        time=datetime(2026, 12, 1, 9, 5, tzinfo=UTC),
    )
    payment = new_event(
        "billing.payment.failed",
        "billing:pi_Console1",  # a billing event naming no contract has its own subject
        {"invoice": INVOICE, "amount": "147.00"},
        source="billing",
        correlation_id=cid,
        time=datetime(2026, 12, 1, 9, 6, tzinfo=UTC),
    )
    account = new_event(
        "crm.account.updated",
        f"customer:{ACCOUNT}",
        {"account_id": ACCOUNT, "name": "Console Test Ltd", "country": ""},
        source="crm",
        correlation_id=cid,
        time=datetime(2026, 12, 1, 9, 7, tzinfo=UTC),
    )
    runtime.log.append_many([won, invoice, payment, account])
    worker = Worker(
        runtime, deal_registry(XrefStore(runtime.engine, runtime.clock)), commit_interval=0.01
    )
    await worker.drain()
    return Deal(cid, won.id, invoice.id, payment.id, account.id)


async def run_pending(runtime: Runtime) -> None:
    """What the hub's worker does after an approval: run the requeued and re-run events."""
    worker = Worker(
        runtime, deal_registry(XrefStore(runtime.engine, runtime.clock)), commit_interval=0.01
    )
    await worker.drain()
