"""CRM account changes (SyncCustomerAccount): field ownership applied to an onboarded account.

An edit of a CRM-owned field (name, address, e-mail, phone) flows to the customer's ERP and
billing customers; an edit of an ERP-owned field (tax registration, legal entity, credit, terms)
is not propagated: it becomes a ``masterdata.ownership.violated`` warning in the exception queue
(category ``ownership``, naming the account, the field, the CRM's and the ERP's value) and the
ERP's value is written back to the account's read-only fields. Which field is whose is decided
by ``masterdata.ownership`` (``config/ownership.yaml``), nowhere else. An account the hub has not
onboarded is left alone (its first deal onboards it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from quote2cash.canonical import Customer, Ref
from quote2cash.connectors.roles import AccountFinancials, ChangedAccount
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import Category, PermanentError
from quote2cash.engine.events import Event
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.onboarding import (
    customer_record,
    published,
    read_account,
    write_billing_customer,
    write_erp_customer,
)
from quote2cash.masterdata.ownership import VIOLATION_EVENT, reconcile_owned, shown_value
from quote2cash.masterdata.xref import Kind

ACCOUNT_CHANGED = "crm.account.changed"
_NAMESPACE = uuid.UUID("5c0f7a51-9d2e-4b8a-8f36-1e7d2a9c4b60")


def account_subject(account_id: str) -> str:
    """One CRM account's changes are handled in order, apart from every contract."""
    return f"account:crm:{account_id}"


def account_event(change: ChangedAccount, *, time: datetime) -> Event:
    """The one event for one change of an account (its CRM stamp): polled twice, logged once."""
    stamp = change.changed_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return Event(
        id=f"account_changed:{change.account_id}:{stamp}",
        source="crm",
        type=ACCOUNT_CHANGED,
        subject=account_subject(change.account_id),
        time=time,
        correlation_id=f"account-{uuid.uuid5(_NAMESPACE, change.account_id)}",
        data={"account_id": change.account_id, "changed_at": stamp},
    )


async def _erp_record(ctx: HandlerContext, deps: FlowDeps, erp_id: str) -> dict[str, Any]:
    """The ERP's customer with only the fields the ERP carries (what it owns is compared)."""

    async def read() -> dict[str, Any]:
        customer = await deps.erp.get_customer(erp_id)
        return customer.model_dump(mode="json", exclude_unset=True)

    return dict(await ctx.step("erp.get_customer", lambda _k: read()))


async def sync_account_change(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``crm.account.changed``: propagate what the CRM owns, warn about and undo the rest."""
    account_id = str(event.data["account_id"])
    gid = deps.xref.global_id_for(Kind.CUSTOMER, "crm", account_id)
    if gid is None:
        return
    account = await read_account(ctx, deps, account_id)
    erp_id = deps.xref.local_id(gid, "erp")
    entity_key = deps.decisions.decided(gid)
    held: dict[str, Customer] = {}
    if erp_id is not None:
        erp = Customer.model_validate(await _erp_record(ctx, deps, erp_id))
        held["erp"] = erp.model_copy(
            update={"legal_entity": Ref(global_id=entity_key) if entity_key else None}
        )
    owned = reconcile_owned(
        deps.ownership_rules,
        "customer",
        "crm",
        account,
        held,
        record=f"account {account_id} ({account.name})",
    )
    for conflict in owned.conflicts:
        # A subject per warning: a warning waiting for a person holds back no other.
        ctx.emit(
            VIOLATION_EVENT,
            f"ownership:{event.id}:{conflict.field}",
            conflict.event_payload(gid),
            key=f"ownership:{conflict.field}",
        )
    if entity_key is None:
        return
    spec = deps.entities.config.entities[entity_key]
    entity = deps.entities.as_decided(entity_key, spec.base_currency)
    record_account = owned.record
    tax = deps.tax_for(record_account, entity)
    record = customer_record(
        deps, record_account.model_copy(update={"tax_exemption": tax.exemption}), entity
    )
    if erp_id is not None:
        await write_erp_customer(ctx, deps, record)
    if deps.xref.local_id(gid, "billing") is not None:
        await write_billing_customer(ctx, deps, record)
    if "erp" in held:
        await publish_financials(ctx, deps, account, held["erp"], entity_key)


async def publish_financials(
    ctx: HandlerContext, deps: FlowDeps, account: Customer, erp: Customer, entity_key: str
) -> None:
    """Write the ERP's tax registration and the legal entity to the account's read-only
    fields, unless it shows them already."""
    account_id = account.external_ids["crm"]
    tax_id = erp.tax_ids[0].value if erp.tax_ids else ""
    shown_tax = account.tax_ids[0].value if account.tax_ids else ""
    shown_entity = shown_value(account.legal_entity) or ""
    if (shown_value(tax_id), shown_entity) == (shown_value(shown_tax), entity_key):
        return
    financials = AccountFinancials(account_id, tax_id=tax_id, legal_entity=entity_key)
    await ctx.step(
        "crm.publish_account_financials",
        lambda key: published(deps.crm.publish_status([financials], idempotency_key=key)),
    )


async def hold_ownership_warning(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``masterdata.ownership.violated``: the exception queue shows who changed what the other
    system owns, with both values; nothing was propagated (resolve it once it is understood)."""
    data = event.data
    reason = data.get("reason") or (
        f"{data.get('entity')} {data.get('entity_id')}: field {data.get('field')!r} is owned by "
        f"{data.get('owner')}; a change from {data.get('source_system')} was not propagated"
    )
    source = data.get("source_system")
    raise PermanentError(
        str(reason), category=Category.OWNERSHIP, system=str(source) if source else None
    )
