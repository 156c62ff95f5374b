"""Customer onboarding (CreateCustomerAccount): CRM account -> global id -> legal entity ->
billing customer and ERP customer -> ids written back to the CRM account (once both exist).

The order of the two writes is finance's policy (``flows.policy``): by default the billing
customer comes first and the ERP customer is among the deal's last writes, so a deal reaches
billing and the CRM (subscription, opportunity) while the ERP is paused, in a window or behind
an open breaker, and the ERP customer and the account's ids follow in order when it is back (the
contract's later events, its booking and invoices, wait behind them). ``erp_first`` writes the
ERP customer before anything reaches billing.

A customer buying through several legal entities has one ERP customer per entity
(``masterdata.entity_customers``), each with the tax registrations of its jurisdiction; billing
and the CRM see one customer.

An ERP customer that exists keeps the values the ERP owns (``config/ownership.yaml``): a CRM edit
of its tax registration is not sent with a later deal (the account sync warns about it).

A customer the hub already wrote, unchanged since (same canonical record, same legal entity;
``masterdata.sync``), is not written to the ERP or billing again, and ids the account already
shows are not published again: a customer's second deal costs no master-data calls. The
write-back of an account's first ERP id is remembered as what the account shows
(``masterdata.sync``), so its echo through the CRM poll is not synced again (``flows.accounts``),
unless the account shows an ERP-owned value the ERP was not written with: that change is the
account sync's to warn about.

The legal entity is decided once per contract before any system is written (an account no rule
resolves goes to the exception queue, category ``mapping``, untouched) and kept
(``masterdata.entities.EntityDecisions``): every later step of the contract uses it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from quote2cash.canonical import Customer, Ref
from quote2cash.connectors.roles import CustomerLinks, StatusResult
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.store_calls import in_store
from quote2cash.flows import announce
from quote2cash.flows.customers import flag_duplicate, survivor_account
from quote2cash.flows.deps import FlowDeps
from quote2cash.masterdata.entities import EntityResolution
from quote2cash.masterdata.entity_customers import tax_ids_for
from quote2cash.masterdata.ownership import (
    VIOLATION_EVENT,
    FieldConflict,
    OwnedRecord,
    differs,
    reconcile_owned,
)
from quote2cash.masterdata.sync import (
    CRM_ACCOUNT,
    NOT_FROM_ACCOUNT,
    account_fingerprint,
    fingerprint,
)
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
    entity_gid: str = ""
    """The customer as ``entity`` serves it: the global id its ERP and billing customers are
    keyed by ("": ``global_id``, its home entity's)."""
    duplicate_of: str | None = None
    """The CRM account holding the customer's ids when this account is another account of the
    same golden customer: the customer's ERP and billing customers serve it, and it is flagged
    in the CRM for sales operations to merge instead of getting the ids."""
    erp_kept: set[str] = field(default_factory=set, compare=False)
    """The fields whose ERP values an existing ERP customer kept over the account's in this
    event (ownership): a change the account sync, not onboarding, warns about."""


async def read_account(ctx: HandlerContext, deps: FlowDeps, account_id: str) -> Customer:
    raw = await ctx.step(
        "crm.get_account",
        lambda _k: dump(deps.crm.get_account(account_id)),
    )
    return Customer.model_validate(raw)


def customer_record(deps: FlowDeps, account: Customer, entity: EntityResolution) -> CustomerRecord:
    crm_id = account.external_ids["crm"]
    gid = deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", crm_id, actor="flows")
    keep_parent(deps, gid, account)
    erp_gid = deps.entity_customers.account_for(
        gid, entity.entity_key, home=deps.decisions.decided(gid), actor="flows"
    )
    tax_ids = tax_ids_for(account, entity.entity_key, deps.entities)
    customer = account.model_copy(
        update={"global_id": gid, "currency": entity.invoicing_currency, "tax_ids": tax_ids}
    )
    # the ids and legal entity the hub itself writes back to the account are not master data
    print_ = fingerprint(
        customer.model_copy(
            update={
                "external_ids": {"crm": crm_id},
                "legal_entity": None,
                "parent": None,
                "credit_limit": None,
            }
        ),
        legal_entity=entity.entity_key,
    )
    duplicate_of = survivor_account(deps, gid, crm_id)
    return CustomerRecord(account, customer, gid, crm_id, entity, print_, erp_gid, duplicate_of)


def keep_parent(deps: FlowDeps, gid: str, account: Customer) -> None:
    """The golden record keeps the CRM's account hierarchy: the account's parent (known to the
    hub from then on) becomes the customer's parent; a cleared parent detaches it (audited)."""
    parent_id = account.parent.id_in("crm") if account.parent else None
    parent = (
        deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", parent_id, actor="flows")
        if parent_id
        else None
    )
    if deps.xref.parent_of(gid) != parent:
        deps.xref.reparent(
            gid,
            parent,
            actor="flows",
            reason=f"CRM account {account.external_ids['crm']}: parent account {parent_id}",
        )


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


def _as_served(deps: FlowDeps, record: CustomerRecord, system: str) -> tuple[str, Customer]:
    """The global id and record a system's customer is written with: another entity's is
    keyed by its own ids, never by the home one's the CRM account shows."""
    gid, customer = record.entity_gid or record.global_id, record.customer
    if gid != record.global_id:
        ids = {k: v for k, v in customer.external_ids.items() if k != system}
        own = deps.xref.local_id(gid, system)
        if own is not None:
            ids[system] = own
        customer = customer.model_copy(update={"global_id": gid, "external_ids": ids})
    return gid, customer


async def write_erp_customer(
    ctx: HandlerContext,
    deps: FlowDeps,
    record: CustomerRecord,
    *,
    step: str = "erp.upsert_customer",
) -> str:
    """The customer's ERP customer in the record's legal entity, written unless unchanged
    (``step`` names the write: one per entity where an event writes several)."""
    gid, customer = await in_store(_as_served, deps, record, "erp")
    print_ = record.print_
    erp_id, known = await in_store(_written, deps, record, gid, "erp")
    if erp_id is None:
        if known is not None:
            owned = await _with_erp_owned(ctx, deps, customer, known, step)
            record.erp_kept.update(conflict.field for conflict in owned.conflicts)
            customer = owned.record
        erp_id = str(
            await ctx.step(
                step,
                lambda key: deps.erp.upsert_customer(
                    customer, legal_entity=record.entity.entity_key, idempotency_key=key
                ),
            )
        )
        await in_store(_remember, deps, gid, "erp", print_, erp_id)
    return erp_id


async def _with_erp_owned(
    ctx: HandlerContext, deps: FlowDeps, customer: Customer, erp_id: str, step: str
) -> OwnedRecord[Customer]:
    """An existing ERP customer keeps what the ERP owns (tax registrations ...): the CRM's
    values of those fields are not sent (``masterdata.ownership``; the account sync warns)."""

    async def read() -> dict[str, Any]:
        held = await deps.erp.get_customer(erp_id)
        return held.model_dump(mode="json", exclude_unset=True)

    name = "erp.get_customer" if step == "erp.upsert_customer" else f"{step}.read"
    held = Customer.model_validate(await ctx.step(name, lambda _k: read()))
    label = f"account {customer.external_ids.get('crm', customer.global_id)}"
    return reconcile_owned(
        deps.ownership_rules, "customer", "crm", customer, {"erp": held}, record=label
    )


async def write_billing_customer(
    ctx: HandlerContext,
    deps: FlowDeps,
    record: CustomerRecord,
    *,
    step: str = "billing.upsert_customer",
) -> str:
    """The customer's billing customer for the record's legal entity (billing holds one
    currency per customer), written unless unchanged (``step``: one per entity)."""
    gid, customer = await in_store(_as_served, deps, record, "billing")
    print_ = record.print_
    billing_id, _known = await in_store(_written, deps, record, gid, "billing")
    if billing_id is None:
        billing_id = str(
            await ctx.step(
                step,
                lambda key: deps.billing.upsert_customer(customer, idempotency_key=key),
            )
        )
        await in_store(_remember, deps, gid, "billing", print_, billing_id)
    return billing_id


def _written(
    deps: FlowDeps, record: CustomerRecord, gid: str, system: str
) -> tuple[str | None, str | None]:
    """The system's customer if the hub need not write it (unchanged since its last write, or
    a duplicate account's customer), and the one the cross-reference links (None: none)."""
    unchanged = deps.sync.unchanged(gid, system, record.print_)
    if unchanged is not None:
        return unchanged, unchanged
    linked = deps.xref.local_id(gid, system)
    return (linked if record.duplicate_of is not None else None), linked


def _remember(deps: FlowDeps, gid: str, system: str, print_: str, local_id: str) -> None:
    """Link the system's customer written and keep what was written (``masterdata.sync``)."""
    deps.xref.link(gid, system, local_id, actor="flows")
    deps.sync.record(gid, system, print_, local_id)


async def publish_account_ids(
    ctx: HandlerContext, deps: FlowDeps, record: CustomerRecord, *, billing_id: str, erp_id: str
) -> None:
    """Write the hub's ids and the legal entities back to the account, unless it shows them
    all; the ERP id shown is the home entity's ERP customer, the entities all that serve it."""
    if record.duplicate_of is not None:
        await flag_duplicate(ctx, deps, record.crm_id, record.duplicate_of, record.global_id)
        return
    account = record.account
    links = await in_store(_account_links, deps, record, billing_id, erp_id)
    shown = CustomerLinks(
        record.crm_id,
        account.global_id or "",
        account.external_ids.get("erp", ""),
        account.external_ids.get("billing", ""),
        (account.legal_entity.id_in("crm") or "") if account.legal_entity else "",
    )
    if shown == links:
        return
    _warn_of_entity_edit(ctx, deps, record, shown.legal_entity, links.legal_entity)
    if not shown.erp_customer_id and _erp_has_what_account_shows(deps, record):
        entity = Ref.external("crm", links.legal_entity) if links.legal_entity else None
        after = account.model_copy(update={"legal_entity": entity})
        await in_store(remember_shown, deps, record.global_id, after)
    await ctx.step(
        "crm.publish_account_ids",
        lambda key: published(deps.crm.publish_status([links], idempotency_key=key)),
    )
    if not (shown.erp_customer_id or shown.billing_customer_id):
        announce.customer_created(
            ctx,
            customer_id=record.global_id,
            crm_account_id=record.crm_id,
            billing_customer_id=billing_id,
            erp_customer_id=erp_id,
            legal_entity=record.entity.entity_key,
            name=record.customer.name,
        )


def _erp_has_what_account_shows(deps: FlowDeps, record: CustomerRecord) -> bool:
    """Whether every ERP-owned value the account shows is what its ERP customer was written
    with (the legal entity aside: the write-back sets it), so the account sync has nothing to
    warn about. The ERP's credit limit is not compared here: an account showing one is synced."""
    if record.erp_kept or record.account.credit_limit is not None:
        return False
    for name in sorted(record.account.model_fields_set - NOT_FROM_ACCOUNT - {"legal_entity"}):
        if "crm" in deps.ownership_rules.owners_of("customer", name):
            continue
        if differs(getattr(record.account, name), getattr(record.customer, name)):
            return False
    return True


def remember_shown(deps: FlowDeps, gid: str, shown: Customer) -> None:
    """Keep what the account will show once the hub's writes to it land (``flows.accounts``
    then knows their echo). Kept before the writes: one that fails leaves the account showing
    something else, which is synced again."""
    deps.sync.record(gid, CRM_ACCOUNT, account_fingerprint(shown), shown.external_ids["crm"])


def _account_links(
    deps: FlowDeps, record: CustomerRecord, billing_id: str, erp_id: str
) -> CustomerLinks:
    """What the account should show: the home entity's customers, the entities serving it."""
    if record.entity_gid and record.entity_gid != record.global_id:
        erp_id = deps.xref.local_id(record.global_id, "erp") or erp_id
        billing_id = deps.xref.local_id(record.global_id, "billing") or billing_id
    return CustomerLinks(
        record.crm_id, record.global_id, erp_id, billing_id, served_by(deps, record)
    )


def _warn_of_entity_edit(
    ctx: HandlerContext, deps: FlowDeps, record: CustomerRecord, shown: str, served: str
) -> None:
    """An account showing an entity that does not serve the customer was edited in the CRM:
    the write-back undoes it, and the ownership warning says so (as the account sync would)."""
    owners = deps.ownership_rules.owners_of("customer", "legal_entity")
    foreign = {e for e in shown.split(",") if e} - set(served.split(","))
    if not foreign or "crm" in owners or not owners:
        return
    label = f"account {record.crm_id} ({record.account.name})"
    conflict = FieldConflict(
        "customer", label, "legal_entity", "crm", owners[0], shown or None, served
    )
    ctx.emit(
        VIOLATION_EVENT,
        f"ownership:{ctx.event.id}:legal_entity",
        conflict.event_payload(record.global_id),
        key="ownership:legal_entity",
    )


def served_by(deps: FlowDeps, record: CustomerRecord) -> str:
    """The legal entities serving the customer as the CRM shows them: ``DE`` or ``DE,US``."""
    keys = set(deps.entity_customers.entities_of(record.global_id)) | {record.entity.entity_key}
    return ",".join(sorted(keys))


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
