"""CRM account changes (SyncCustomerAccount): field ownership applied to an onboarded account.

An edit of a CRM-owned field (name, address, e-mail, phone) flows to the customer's ERP and
billing customers; an edit of an ERP-owned field (tax registration, legal entity, credit, terms)
is not propagated: it becomes a ``masterdata.ownership.violated`` warning in the exception queue
(category ``ownership``, naming the account, the field, the CRM's and the ERP's value) and the
ERP's value is written back to the account's read-only fields. Which field is whose is decided
by ``masterdata.ownership`` (``config/ownership.yaml``), nowhere else. An account the hub has not
onboarded is left alone (its first deal onboards it).

An account change whose account shows exactly what the hub last synced and wrote back
(``masterdata.sync.account_fingerprint``: every field a person can change) is the hub's own
write-back coming back through the poll: it is recorded as handled and no system is called.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from quote2cash.canonical import Customer, Ref
from quote2cash.connectors.roles import AccountFinancials, ChangedAccount
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import Category, PermanentError
from quote2cash.engine.events import Event
from quote2cash.engine.store_calls import in_store
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.onboarding import (
    CustomerRecord,
    customer_record,
    published,
    read_account,
    remember_shown,
    write_billing_customer,
    write_erp_customer,
)
from quote2cash.masterdata.ownership import (
    VIOLATION_EVENT,
    differs,
    reconcile_owned,
    shown_value,
)
from quote2cash.masterdata.sync import CRM_ACCOUNT, account_fingerprint
from quote2cash.masterdata.xref import Kind

ACCOUNT_CHANGED = "crm.account.changed"
_NAMESPACE = uuid.UUID("5c0f7a51-9d2e-4b8a-8f36-1e7d2a9c4b60")
log = logging.getLogger("quote2cash.flows.accounts")


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


async def _erp_record(
    ctx: HandlerContext, deps: FlowDeps, erp_id: str, step: str
) -> dict[str, Any]:
    """The ERP's customer with only the fields the ERP carries (what it owns is compared)."""

    async def read() -> dict[str, Any]:
        customer = await deps.erp.get_customer(erp_id)
        return customer.model_dump(mode="json", exclude_unset=True)

    return dict(await ctx.step(step, lambda _k: read()))


async def sync_account_change(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``crm.account.changed``: propagate what the CRM owns, warn about and undo the rest."""
    account_id = str(event.data["account_id"])
    gid = await in_store(deps.xref.global_id_for, Kind.CUSTOMER, "crm", account_id)
    if gid is None:
        return
    account = await read_account(ctx, deps, account_id)
    if await in_store(is_as_synced, deps, gid, account):
        log.info("account %s shows what the hub last synced: nothing changed", account_id)
        return
    entities, entity_key = await in_store(_served_by, deps, gid)
    if entity_key is None:
        return
    held = await _held_by_erp(ctx, deps, entities, entity_key)
    owned = reconcile_owned(
        deps.ownership_rules,
        "customer",
        "crm",
        account,
        {"erp": held} if held is not None else {},
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
    record = await in_store(_record, deps, owned.record, entity_key)
    if held is not None:
        await write_erp_customer(ctx, deps, record)
    if await in_store(deps.xref.local_id, gid, "billing") is not None:
        await write_billing_customer(ctx, deps, record)
    for other in sorted(set(entities) - {entity_key}):
        served = await in_store(_record, deps, owned.record, other)
        if await in_store(deps.xref.local_id, entities[other], "erp") is not None:
            step = f"erp.upsert_customer.{other}"
            await write_erp_customer(ctx, deps, served, step=step)
        if await in_store(deps.xref.local_id, entities[other], "billing") is not None:
            step = f"billing.upsert_customer.{other}"
            await write_billing_customer(ctx, deps, served, step=step)
    shown = account if held is None else financials_shown(account, held)
    await in_store(remember_shown, deps, gid, shown)
    if held is not None:
        await publish_financials(ctx, deps, account, held)


def is_as_synced(deps: FlowDeps, gid: str, account: Customer) -> bool:
    """Whether the account shows what the hub last synced of it and wrote back to it."""
    crm_id = account.external_ids["crm"]
    return deps.sync.unchanged(gid, CRM_ACCOUNT, account_fingerprint(account)) == crm_id


async def _held_by_erp(
    ctx: HandlerContext, deps: FlowDeps, entities: dict[str, str], home: str
) -> Customer | None:
    """What the ERP holds of the customer: its home ERP customer, with the tax registrations
    of all its entities' ERP customers and the entities serving it (None: not in the ERP)."""
    home_id = await in_store(deps.xref.local_id, entities[home], "erp")
    if home_id is None:
        return None
    erp = Customer.model_validate(await _erp_record(ctx, deps, home_id, "erp.get_customer"))
    tax_ids = list(erp.tax_ids)
    for entity in sorted(set(entities) - {home}):
        erp_id = await in_store(deps.xref.local_id, entities[entity], "erp")
        if erp_id is not None:
            step = f"erp.get_customer.{entity}"
            other = Customer.model_validate(await _erp_record(ctx, deps, erp_id, step))
            tax_ids += [t for t in other.tax_ids if t not in tax_ids]
    served = ",".join(sorted(entities))
    return erp.model_copy(update={"tax_ids": tuple(tax_ids), "legal_entity": Ref(global_id=served)})


def _served_by(deps: FlowDeps, gid: str) -> tuple[dict[str, str], str | None]:
    """The entities serving the customer (entity -> the global id keying it there) and its home
    entity (None: the hub never decided one, so there is nothing to sync)."""
    entities = deps.entity_customers.entities_of(gid)
    home = next((e for e, keyed in entities.items() if keyed == gid), None)
    entity_key = home or deps.decisions.decided(gid)
    if entity_key is not None:
        entities.setdefault(entity_key, gid)
    return entities, entity_key


def _record(deps: FlowDeps, account: Customer, entity_key: str) -> CustomerRecord:
    """The customer as the hub writes it for ``entity_key`` (as onboarding builds it)."""
    spec = deps.entities.config.entities[entity_key]
    entity = deps.entities.as_decided(entity_key, spec.base_currency)
    tax = deps.tax_for(account, entity)
    return customer_record(
        deps, account.model_copy(update={"tax_exemption": tax.exemption}), entity
    )


def _financial_fields(erp: Customer) -> list[str]:
    return ["tax_ids", "legal_entity"] + (["credit_limit"] if erp.credit_limit else [])


def _shows_financials(account: Customer, erp: Customer) -> bool:
    return not any(differs(getattr(account, f), getattr(erp, f)) for f in _financial_fields(erp))


def financials_shown(account: Customer, erp: Customer) -> Customer:
    """The account as it shows once ``publish_financials`` wrote the ERP's values to it."""
    if _shows_financials(account, erp):
        return account
    return account.model_copy(update={f: getattr(erp, f) for f in _financial_fields(erp)})


async def publish_financials(
    ctx: HandlerContext, deps: FlowDeps, account: Customer, erp: Customer
) -> None:
    """Write the ERP's tax registrations, the legal entities serving the customer and its
    credit limit (where the ERP holds one) to the account's read-only fields, unless it shows
    them already."""
    if _shows_financials(account, erp):
        return
    financials = AccountFinancials(
        account.external_ids["crm"],
        tax_ids=erp.tax_ids,
        legal_entity=shown_value(erp.legal_entity) or "",
        credit_limit=erp.credit_limit,
    )
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
