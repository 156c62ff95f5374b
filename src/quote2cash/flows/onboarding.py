"""Customer onboarding (CreateCustomerAccount): CRM account -> global id -> legal entity ->
billing customer and ERP customer -> ids written back to the CRM account (once both exist).

The order of the two writes is finance's policy (``flows.policy``): by default the billing
customer comes first and the ERP customer is among the deal's last writes, so a deal reaches
billing and the CRM (subscription, opportunity) while the ERP is paused, in a window or behind
an open breaker, and the ERP customer and the account's ids follow in order when it is back (the
contract's later events, its booking and invoices, wait behind them). ``erp_first`` writes the
ERP customer before anything reaches billing.

A customer the hub already wrote, unchanged since (same canonical record, same legal entity;
``masterdata.sync``), is not written to the ERP or billing again, and ids the account already
shows are not published again: a customer's second deal costs no master-data calls.

The legal entity is decided once per contract before any system is written (an account no rule
resolves goes to the exception queue, category ``mapping``, untouched) and kept
(``masterdata.entities.EntityDecisions``): every later step of the contract uses it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from quote2cash.canonical import Customer
from quote2cash.connectors.roles import CustomerLinks, StatusResult
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.flows.customers import flag_duplicate, survivor_account
from quote2cash.flows.deps import FlowDeps
from quote2cash.masterdata.entities import EntityResolution
from quote2cash.masterdata.sync import fingerprint
from quote2cash.masterdata.xref import Kind


@dataclass(frozen=True)
class CustomerRecord:
    """An account as the hub writes it to the ERP and billing, with its global id and entity."""

    account: Customer
    customer: Customer
    global_id: str
    crm_id: str
    entity: EntityResolution
    print_: str
    duplicate_of: str | None = None
    """The CRM account holding the customer's ids when this account is another account of the
    same golden customer: the customer's ERP and billing customers serve it, and it is flagged
    in the CRM for sales operations to merge instead of getting the ids."""


async def read_account(ctx: HandlerContext, deps: FlowDeps, account_id: str) -> Customer:
    raw = await ctx.step(
        "crm.get_account",
        lambda _k: dump(deps.crm.get_account(account_id)),
    )
    return Customer.model_validate(raw)


def customer_record(deps: FlowDeps, account: Customer, entity: EntityResolution) -> CustomerRecord:
    crm_id = account.external_ids["crm"]
    gid = deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", crm_id, actor="flows")
    customer = account.model_copy(update={"global_id": gid, "currency": entity.invoicing_currency})
    # the ids and legal entity the hub itself writes back to the account are not master data
    print_ = fingerprint(
        customer.model_copy(update={"external_ids": {"crm": crm_id}, "legal_entity": None}),
        legal_entity=entity.entity_key,
    )
    duplicate_of = survivor_account(deps, gid, crm_id)
    return CustomerRecord(account, customer, gid, crm_id, entity, print_, duplicate_of)


def contract_entity(
    deps: FlowDeps, contract_gid: str, customer_gid: str, account: Customer, currency: str
) -> EntityResolution:
    """The entity decided for the contract (in ``currency``, the contract's) at Closed Won; a
    contract from before decisions were kept is resolved once from its CRM account (a full
    record) and that decision kept."""
    kept = deps.decisions.decided(contract_gid)
    if kept is not None:
        return deps.entities.as_decided(kept, currency)
    entity = deps.entities.resolve(account)
    deps.decisions.decide(contract_gid, customer_gid, entity.entity_key)
    return entity


async def write_erp_customer(ctx: HandlerContext, deps: FlowDeps, record: CustomerRecord) -> str:
    gid, print_ = record.global_id, record.print_
    erp_id = deps.sync.unchanged(gid, "erp", print_)
    if erp_id is None and record.duplicate_of is not None:
        erp_id = deps.xref.local_id(gid, "erp")
    if erp_id is None:
        erp_id = str(
            await ctx.step(
                "erp.upsert_customer",
                lambda key: deps.erp.upsert_customer(
                    record.customer, legal_entity=record.entity.entity_key, idempotency_key=key
                ),
            )
        )
        deps.xref.link(gid, "erp", erp_id, actor="flows")
        deps.sync.record(gid, "erp", print_, erp_id)
    return erp_id


async def write_billing_customer(
    ctx: HandlerContext, deps: FlowDeps, record: CustomerRecord
) -> str:
    gid, print_ = record.global_id, record.print_
    billing_id = deps.sync.unchanged(gid, "billing", print_)
    if billing_id is None and record.duplicate_of is not None:
        billing_id = deps.xref.local_id(gid, "billing")
    if billing_id is None:
        billing_id = str(
            await ctx.step(
                "billing.upsert_customer",
                lambda key: deps.billing.upsert_customer(record.customer, idempotency_key=key),
            )
        )
        deps.xref.link(gid, "billing", billing_id, actor="flows")
        deps.sync.record(gid, "billing", print_, billing_id)
    return billing_id


async def publish_account_ids(
    ctx: HandlerContext, deps: FlowDeps, record: CustomerRecord, *, billing_id: str, erp_id: str
) -> None:
    """Write the hub's ids and the legal entity back to the account, unless it shows them all;
    a duplicate account is flagged for sales operations instead (the ids stay on one account)."""
    if record.duplicate_of is not None:
        await flag_duplicate(ctx, deps, record.crm_id, record.duplicate_of, record.global_id)
        return
    account = record.account
    links = CustomerLinks(
        record.crm_id, record.global_id, erp_id, billing_id, record.entity.entity_key
    )
    shown = CustomerLinks(
        record.crm_id,
        account.global_id or "",
        account.external_ids.get("erp", ""),
        account.external_ids.get("billing", ""),
        (account.legal_entity.id_in("crm") or "") if account.legal_entity else "",
    )
    if shown == links:
        return
    await ctx.step(
        "crm.publish_account_ids",
        lambda key: published(deps.crm.publish_status([links], idempotency_key=key)),
    )


async def dump(awaitable: Awaitable[BaseModel]) -> dict[str, Any]:
    """A canonical record as JSON-able data, so a step can record it."""
    return (await awaitable).model_dump(mode="json")


async def published(awaitable: Awaitable[list[StatusResult]]) -> list[str | None]:
    """Status write-back results; a per-record refusal is a data problem, not a success."""
    results = await awaitable
    refused = [r.error for r in results if r.error]
    if refused:
        raise DataError("CRM refused the status update: " + "; ".join(refused), system="crm")
    return [r.crm_id for r in results]
