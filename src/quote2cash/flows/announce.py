"""The business events flows publish (``ctx.publish``), each built here from canonical records
so every payload of one type has one shape (``docs/asyncapi.yaml`` documents it). Money is a
decimal string with its ISO currency; times are ISO 8601 UTC.

Each is published after the step that makes it true and is committed with the event's outcome
(``engine.outbox``); its message id is stable across re-runs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from quote2cash.bus.catalog import BusinessEvent
from quote2cash.canonical import Invoice, Money, Payment, Subscription
from quote2cash.engine.context import HandlerContext


def _money(value: Money | None) -> str | None:
    return None if value is None else str(value.amount)


def _time(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _contract(sub: Subscription, contract_id: str | None) -> dict[str, Any]:
    return {
        "contract_number": sub.contract_number,
        "contract_id": contract_id,
        "subscription_id": sub.id_in("billing"),
        "customer_id": sub.customer.global_id,
        "status": str(sub.status),
        "quantity": sum(i.quantity or 0 for i in sub.items),
        "currency": sub.currency,
        "current_period_start": _time(sub.current_period_start),
        "current_period_end": _time(sub.current_period_end),
    }


def customer_created(
    ctx: HandlerContext,
    *,
    customer_id: str,
    crm_account_id: str,
    billing_customer_id: str,
    erp_customer_id: str,
    legal_entity: str,
    name: str,
) -> None:
    """The customer exists in billing and the ERP, linked to its CRM account, for the first time."""
    ctx.publish(
        BusinessEvent.CUSTOMER_CREATED,
        {
            "customer_id": customer_id,
            "crm_account_id": crm_account_id,
            "billing_customer_id": billing_customer_id,
            "erp_customer_id": erp_customer_id,
            "legal_entity": legal_entity,
            "name": name,
        },
        subject=f"customer:{customer_id}",
    )


def subscription_activated(
    ctx: HandlerContext,
    sub: Subscription,
    *,
    contract_id: str,
    opportunity_id: str,
    erp_order_id: str,
) -> None:
    """Billing activated the contract and the ERP has booked it."""
    ctx.publish(
        BusinessEvent.SUBSCRIPTION_ACTIVATED,
        {
            **_contract(sub, contract_id),
            "opportunity_id": opportunity_id,
            "erp_order_id": erp_order_id,
            "started_at": _time(sub.started_at),
        },
    )


def subscription_amended(
    ctx: HandlerContext,
    sub: Subscription,
    *,
    contract_id: str,
    amendment_id: str,
    previous_seats: int,
    seats: int,
    effective_at: datetime,
) -> None:
    """A seat change is applied in billing and its delta booked in the ERP."""
    ctx.publish(
        BusinessEvent.SUBSCRIPTION_AMENDED,
        {
            **_contract(sub, contract_id),
            "amendment_id": amendment_id,
            "previous_seats": previous_seats,
            "seats": seats,
            "effective_at": _time(effective_at),
        },
        key=amendment_id,
    )


def subscription_renewed(ctx: HandlerContext, sub: Subscription, *, contract_id: str) -> None:
    """Billing started the contract's next period."""
    ctx.publish(BusinessEvent.SUBSCRIPTION_RENEWED, _contract(sub, contract_id))


def subscription_cancelled(ctx: HandlerContext, sub: Subscription, *, contract_id: str) -> None:
    """Billing ended the contract."""
    ctx.publish(
        BusinessEvent.SUBSCRIPTION_CANCELLED,
        {**_contract(sub, contract_id), "canceled_at": _time(sub.canceled_at)},
    )


def _invoice(invoice: Invoice, customer_id: str) -> dict[str, Any]:
    return {
        "invoice_id": invoice.id_in("billing"),
        "invoice_number": invoice.number,
        "customer_id": customer_id,
        "subscription_id": invoice.subscription.id_in("billing") if invoice.subscription else None,
        "currency": invoice.currency,
    }


def invoice_posted(
    ctx: HandlerContext, invoice: Invoice, *, customer_id: str, erp_invoice_id: str
) -> None:
    """Billing's invoice is posted in the ERP (receivable and deferred revenue)."""
    ctx.publish(
        BusinessEvent.INVOICE_POSTED,
        {
            **_invoice(invoice, customer_id),
            "erp_invoice_id": erp_invoice_id,
            "subtotal": _money(invoice.subtotal),
            "tax": _money(invoice.tax),
            "total": _money(invoice.total),
            "issued_at": _time(invoice.issued_at),
            "due_date": _time(invoice.due_date),
        },
    )


def credit_note_issued(
    ctx: HandlerContext, invoice: Invoice, *, customer_id: str, erp_credit_note_id: str
) -> None:
    """Billing's credit invoice is a credit note in the ERP (amounts positive, as credited)."""
    ctx.publish(
        BusinessEvent.CREDIT_NOTE_ISSUED,
        {
            **_invoice(invoice, customer_id),
            "erp_credit_note_id": erp_credit_note_id,
            "total": _money(-invoice.total),
            "issued_at": _time(invoice.issued_at),
        },
    )


def payment_received(
    ctx: HandlerContext,
    invoice: Invoice,
    payment: Payment,
    *,
    customer_id: str | None,
    erp_invoice_id: str,
) -> None:
    """PublishPaymentEvent: cash billing collected is applied to the ERP invoice."""
    ctx.publish(
        BusinessEvent.PAYMENT_RECEIVED,
        {
            **_invoice(invoice, customer_id or ""),
            "erp_invoice_id": erp_invoice_id,
            "amount": _money(payment.amount),
            "received_at": _time(payment.created_at),
        },
    )


def payment_reversed(
    ctx: HandlerContext,
    invoice: Invoice,
    payment: Payment,
    *,
    customer_id: str | None,
    erp_invoice_id: str,
    balance: Money,
) -> None:
    """PublishPaymentEvent: billing refunded (part of) a payment; the ERP reversed as much."""
    refunded = payment.amount_refunded
    ctx.publish(
        BusinessEvent.PAYMENT_REVERSED,
        {
            **_invoice(invoice, customer_id or ""),
            "payment_id": payment.id_in("billing"),
            "erp_invoice_id": erp_invoice_id,
            "amount": _money(payment.amount),
            "amount_refunded": _money(refunded),
            "balance_due": _money(balance),
        },
    )
