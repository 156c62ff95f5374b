"""The golden customer record in the flows: which customer a won deal's CRM account is, the data
steward's decision on a doubtful one, and the CRM's own account merges.

Onboarding files the account through ``GoldenCustomers.ingest``, the matcher and block keys
``q2c customers match`` uses: an auto match joins the existing customer (its ERP and billing
customers; the account is flagged in the CRM as a duplicate for sales operations to merge), no
match is a new customer, and a review-band match **parks** the deal on the account's steward
task, never guessing; other contracts keep flowing. A steward's decision (``q2c customers
review``, the console) is logged with an event whose handler releases the task's key, so the
parked deal resumes and completes. A CRM merge (the loser deleted, ``MasterRecordId`` naming the
survivor) moves the loser's customer, cross-references and history to the survivor's, audited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from quote2cash.canonical import Customer
from quote2cash.connectors.roles import AccountMerge, Crm, DuplicateAccount, StatusResult
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import Category, DataError
from quote2cash.engine.events import Event
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.store_calls import in_store
from quote2cash.flows.deps import FlowDeps
from quote2cash.identity import Operator
from quote2cash.masterdata import CustomerCandidate, GoldenCustomers, IngestOutcome, TaskDecision
from quote2cash.masterdata.xref import Kind

CUSTOMER_RESOLVED = "customer.resolved"
"""The local step where a deal records how its account was filed (auto_match, review, new...)."""
TASK_DECIDED = "masterdata.steward_task.decided"
ACCOUNT_MERGED = "crm.account.merged"
STEWARD_WAIT = timedelta(days=14)
"""How long a deal waits for a steward before it goes to the exception queue (category data)."""
_NAMESPACE = uuid.UUID("5d0c7f0e-3b7a-4f55-a2f4-0c1e9a7b6d21")


def task_key(system: str, local_id: str) -> str:
    """The park key of an account's steward task: released when a steward decides it."""
    return f"steward-task:{system}:{local_id}"


def customer_subject(system: str, local_id: str) -> str:
    return f"customer:{system}:{local_id}"


async def resolve_customer(ctx: HandlerContext, deps: FlowDeps, account: Customer) -> str:
    """The global id of the deal's account, filed through the golden record; parks the deal
    while the account's steward task is open."""
    crm_id = account.external_ids["crm"]
    golden = deps.golden
    if golden is None:
        return await in_store(
            deps.xref.ensure_global_id, Kind.CUSTOMER, "crm", crm_id, actor="flows"
        )

    def ingest(_key: str) -> dict[str, Any]:
        candidate = CustomerCandidate("crm", crm_id, account, ctx.now)
        result = golden.ingest(candidate, actor="flows", correlation_id=ctx.event.correlation_id)
        return {"global_id": result.global_id, "outcome": result.outcome.value}

    filed = await ctx.local_step(CUSTOMER_RESOLVED, lambda key: in_store(ingest, key))
    doubtful = filed["outcome"] == IngestOutcome.REVIEW.value or (
        filed["outcome"] == IngestOutcome.KNOWN.value
        and not await in_store(_onboarded, deps, str(filed["global_id"]))
    )
    if doubtful:
        task = await in_store(golden.task, "crm", crm_id)
        if task is not None:
            ctx.park(
                task_key("crm", crm_id),
                f"CRM account {crm_id} ({account.name}) may be customer "
                f"{' or '.join(task.options)}: a data steward decides "
                f"(`q2c customers review`)",
                deadline=STEWARD_WAIT,
                category=Category.DATA,
            )
    gid = await in_store(deps.xref.global_id_for, Kind.CUSTOMER, "crm", crm_id)
    if gid is None:
        raise DataError(f"CRM account {crm_id} was filed but has no global id")
    return gid


def _onboarded(deps: FlowDeps, global_id: str) -> bool:
    """Whether the customer has an ERP or billing customer: an account known from before (a
    later deal) waits for its task only while its customer has reached neither system."""
    ids = deps.xref.system_ids(global_id)
    return bool(ids.get("erp") or ids.get("billing"))


def survivor_account(deps: FlowDeps, global_id: str, crm_id: str) -> str | None:
    """The CRM account holding the customer's ids when ``crm_id`` is another account of the same
    customer (a duplicate), else None."""
    primary = deps.xref.local_id(global_id, "crm")
    return primary if primary is not None and primary != crm_id else None


async def flag_duplicate(
    ctx: HandlerContext, deps: FlowDeps, account_id: str, survivor: str, global_id: str
) -> None:
    """Mark the duplicate account in the CRM for sales operations (a refusal is a data error)."""
    flag = DuplicateAccount(account_id, survivor, global_id)

    async def mark(key: str) -> str | None:
        result: StatusResult = await deps.crm.flag_duplicate_account(flag, idempotency_key=key)
        if result.error:
            raise DataError(f"CRM refused the duplicate flag: {result.error}", system="crm")
        return result.crm_id

    await ctx.step("crm.flag_duplicate_account", mark)


# --- the steward's decision ---


@dataclass(frozen=True)
class StewardDecision:
    decision: TaskDecision
    event_id: str


def decide_steward_task(
    runtime: Runtime,
    golden: GoldenCustomers,
    system: str,
    local_id: str,
    *,
    same_as: str | None,
    by: Operator,
    note: str | None = None,
) -> StewardDecision:
    """An authenticated operator decides an account's task; the decision, its audit entry and
    the event that resumes the account's parked deals commit together."""
    by.require("operator", "decide a data steward task")
    now = runtime.clock.now()
    event_id = f"steward:{system}:{local_id}:{uuid.uuid4().hex}"

    def log_release(conn: Any) -> None:  # the decision's transaction (the outbox pattern)
        runtime.log.append_in(conn, [_decided_event(event_id, system, local_id, same_as, by, now)])

    decision = golden.decide_task(
        system, local_id, same_as=same_as, actor=by.name, note=note, also=log_release
    )
    return StewardDecision(decision, event_id)


def _decided_event(
    event_id: str, system: str, local_id: str, same_as: str | None, by: Operator, now: datetime
) -> Event:
    return Event(
        id=event_id,
        source="q2c",
        type=TASK_DECIDED,
        subject=task_key(system, local_id),
        time=now,
        correlation_id=f"steward-{uuid.uuid5(_NAMESPACE, f'{system}:{local_id}')}",
        data={"system": system, "local_id": local_id, "same_as": same_as, "by": by.name},
    )


async def release_steward_task(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``masterdata.steward_task.decided``: the account's parked deals resume."""
    ctx.release(task_key(str(event.data["system"]), str(event.data["local_id"])))


# --- CRM merges ---


def merge_event(merge: AccountMerge, *, time: datetime) -> Event:
    return Event(
        id=f"account_merged:{merge.merged_account_id}",
        source="crm",
        type=ACCOUNT_MERGED,
        subject=customer_subject("crm", merge.survivor_account_id),
        time=time,
        correlation_id=f"merge-{uuid.uuid5(_NAMESPACE, merge.merged_account_id)}",
        data={
            "merged_account_id": merge.merged_account_id,
            "survivor_account_id": merge.survivor_account_id,
            "merged_at": merge.merged_at.isoformat(),
        },
    )


async def poll_account_merges(runtime: Runtime, crm: Crm, *, source: str = "crm.merges") -> int:
    """Log every account the CRM merged since the last poll; returns how many were new."""
    from quote2cash.flows.intake import poll_since

    return await poll_since(
        runtime,
        source,
        lambda since, cursor: crm.account_merges(since=since, cursor=cursor),
        lambda m, at: (f"Account {m.merged_account_id}", partial(merge_event, m, time=at)),
    )


async def reparent_merged_account(ctx: HandlerContext, event: Event, deps: FlowDeps) -> None:
    """``crm.account.merged``: the loser's customer merges into the survivor's (its ERP and
    billing ids, contracts' customer, history follow), and the loser's CRM id is retired."""
    loser = str(event.data["merged_account_id"])
    survivor = str(event.data["survivor_account_id"])
    golden = deps.golden
    if golden is None:
        raise DataError("CRM account merges need the golden record (matching.yaml)")
    await in_store(
        golden.crm_account_merged,
        "crm",
        loser,
        survivor,
        actor="crm-merge",
        correlation_id=event.correlation_id,
    )
