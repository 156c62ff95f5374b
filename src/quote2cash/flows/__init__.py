"""Process APIs: one module per business process, each a sequence of durable engine steps.

``build_registry(deps)`` wires them to the event types they handle. Handlers declare no systems
up front: each step's name starts with the system it calls (``erp.book_order``), which gates it,
so a paused ERP holds an event at its first ERP step while the CRM and billing steps before it
go ahead. Flows speak business terms only: canonical objects, the roles' status types and the
canonical keys of billing events; every system's own shapes stay in its connector.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.flows.accounts import ACCOUNT_CHANGED, hold_ownership_warning, sync_account_change
from quote2cash.flows.amendments import activate_contract, request_amendment
from quote2cash.flows.customers import (
    ACCOUNT_MERGED,
    TASK_DECIDED,
    release_steward_task,
    reparent_merged_account,
)
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import REJECTED, hold_rejected_record
from quote2cash.flows.invoices import mark_overdue, record_failed_payment, sync_refund
from quote2cash.flows.lifecycle import (
    mirror_subscription,
    sync_invoice_or_credit,
    sync_payment_or_settled,
)
from quote2cash.flows.new_business import submit_subscription_order
from quote2cash.flows.usage_posting import BATCH_ACCEPTED, post_accepted_usage
from quote2cash.masterdata.ownership import VIOLATION_EVENT
from quote2cash.readmodels.invoice_status import InvoiceStatusProjection
from quote2cash.usage.postings import UsagePostingProjection

FlowHandler = Callable[[HandlerContext, Event, FlowDeps], Awaitable[None]]

FLOWS: dict[str, FlowHandler] = {
    "crm.opportunity.closed_won": submit_subscription_order,
    "billing.subscription.activated": activate_contract,
    "billing.invoice.finalized": sync_invoice_or_credit,
    "billing.payment.succeeded": sync_payment_or_settled,
    "billing.payment.failed": record_failed_payment,
    "billing.payment.refunded": sync_refund,
    "billing.invoice.overdue": mark_overdue,
    "crm.amendment.requested": request_amendment,
    "billing.subscription.amended": mirror_subscription,
    "billing.subscription.renewed": mirror_subscription,
    "billing.subscription.cancel_scheduled": mirror_subscription,
    "billing.subscription.past_due": mirror_subscription,
    "billing.subscription.canceled": mirror_subscription,
    REJECTED: hold_rejected_record,
    BATCH_ACCEPTED: post_accepted_usage,
    ACCOUNT_CHANGED: sync_account_change,
    VIOLATION_EVENT: hold_ownership_warning,
    TASK_DECIDED: release_steward_task,
    ACCOUNT_MERGED: reparent_merged_account,
}

RETRIES: dict[str, RetryPolicy] = {}
"""Per event type, where the default retry policy does not fit (waiting is parking, not this)."""


async def _recorded_only(ctx: HandlerContext, event: Event) -> None:
    """Billing events no process acts on yet are kept in the log, in order, and marked done."""


def build_registry(deps: FlowDeps, default_retry: RetryPolicy | None = None) -> Registry:
    """The flows' registry; retries not in ``RETRIES`` use ``default_retry`` (default: the
    ``Q2C_RETRY_*`` settings)."""
    if default_retry is None:
        from quote2cash.settings import get_settings

        default_retry = RetryPolicy.from_settings(get_settings())
    registry = Registry(default_retry=default_retry)
    for event_type, flow in FLOWS.items():
        registry.add(event_type, _bind(flow, deps), retry=RETRIES.get(event_type))
    registry.add("billing.*", _recorded_only)
    # GetInvoiceStatus's read model, kept in the transactions of the steps that change it.
    registry.add_projection(InvoiceStatusProjection())
    # The usage postings record, written with each posting step.
    registry.add_projection(UsagePostingProjection())
    return registry


def _bind(flow: FlowHandler, deps: FlowDeps) -> Callable[[HandlerContext, Event], Awaitable[None]]:
    async def handler(ctx: HandlerContext, event: Event) -> None:
        await flow(ctx, event, deps)

    handler.__name__ = flow.__name__
    return handler
