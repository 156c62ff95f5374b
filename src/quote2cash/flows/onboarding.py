"""Customer onboarding (CreateCustomerAccount): CRM account -> global id -> legal entity ->
ERP customer -> billing customer -> ids written back to the CRM.

A customer the hub already wrote, unchanged since (same canonical record, same legal entity;
``masterdata.sync``), is not written to the ERP or billing again, and ids the account already
shows are not published again: a customer's second deal costs no master-data calls.

Entity resolution happens before any system is written, so an account no rule resolves goes to
the exception queue (category ``mapping``) untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from quote2cash.canonical import Customer
from quote2cash.connectors.roles import StatusResult, StatusUpdate
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.flows.deps import FlowDeps
from quote2cash.masterdata.entities import EntityResolution
from quote2cash.masterdata.sync import fingerprint
from quote2cash.masterdata.xref import Kind


@dataclass(frozen=True)
class OnboardedCustomer:
    global_id: str
    crm_id: str
    erp_id: str
    billing_id: str
    entity: EntityResolution


async def read_account(ctx: HandlerContext, deps: FlowDeps, account_id: str) -> Customer:
    raw = await ctx.step(
        "crm.get_account",
        lambda _k: dump(deps.crm.get_account(account_id)),
    )
    return Customer.model_validate(raw)


async def onboard_customer(
    ctx: HandlerContext, deps: FlowDeps, account: Customer, entity: EntityResolution
) -> OnboardedCustomer:
    """Create or update the customer everywhere; every write is a step with its own key."""
    crm_id = account.external_ids["crm"]
    gid = deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", crm_id, actor="flows")
    customer = account.model_copy(update={"global_id": gid, "currency": entity.invoicing_currency})
    # the ids and legal entity the hub itself writes back to the account are not master data
    print_ = fingerprint(
        customer.model_copy(update={"external_ids": {"crm": crm_id}, "legal_entity": None}),
        legal_entity=entity.entity_key,
    )
    erp_id = deps.sync.unchanged(gid, "erp", print_)
    if erp_id is None:
        erp_id = str(
            await ctx.step(
                "erp.upsert_customer",
                lambda key: deps.erp.upsert_customer(
                    customer, legal_entity=entity.entity_key, idempotency_key=key
                ),
                system="erp",
            )
        )
        deps.xref.link(gid, "erp", erp_id, actor="flows")
        deps.sync.record(gid, "erp", print_, erp_id)
    billing_id = deps.sync.unchanged(gid, "billing", print_)
    if billing_id is None:
        billing_id = str(
            await ctx.step(
                "billing.upsert_customer",
                lambda key: deps.billing.upsert_customer(customer, idempotency_key=key),
                system="billing",
            )
        )
        deps.xref.link(gid, "billing", billing_id, actor="flows")
        deps.sync.record(gid, "billing", print_, billing_id)
    ids = {
        "Hub_Global_Id__c": gid,
        "ERP_Customer_Number__c": erp_id,
        "Billing_Customer_Id__c": billing_id,
        "Legal_Entity__c": entity.entity_key,
    }
    shown = (
        account.global_id,
        account.external_ids.get("erp"),
        account.external_ids.get("billing"),
        account.legal_entity.id_in("crm") if account.legal_entity else None,
    )
    if shown != tuple(ids.values()):
        await ctx.step(
            "crm.publish_account_ids",
            lambda key: published(
                deps.crm.publish_status(
                    [StatusUpdate("Account", "Id", crm_id, ids)], idempotency_key=key
                )
            ),
            system="crm",
        )
    return OnboardedCustomer(gid, crm_id, erp_id, billing_id, entity)


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
