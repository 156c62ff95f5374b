"""A quote-to-cash history made through the engine's public primitives, for the KPI tests.

Handlers registered for the flows' event types record the flows' step names (``crm.get_deal``,
``billing.create_subscription``, ``erp.book_order``, ``erp.post_invoice``...), each completing
at a time the scenario planned (the hand-driven clock is set to the event's time plus the
planned delay before the step runs). The legal entity of each contract is decided through the
master-data API, as the flows do. ``Plan`` keeps what was planned, so a test computes the
expected KPIs from the plan, not from the store.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, TransientError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.masterdata.entities import EntityDecisions
from quote2cash.masterdata.xref import Kind, XrefStore

CURRENCY = {"US": "USD", "DE": "EUR", None: "USD"}


@dataclass
class Deal:
    opportunity: str
    contract: str
    entity: str | None
    closed_at: datetime
    billing_after: float
    erp_after: float | None
    lines: list[Decimal]

    @property
    def subject(self) -> str:
        return f"contract:{self.contract}"

    @property
    def currency(self) -> str:
        return CURRENCY[self.entity]


@dataclass
class InvoicePlan:
    deal: Deal
    invoice_id: str
    finalized_at: datetime
    erp_after: float
    crm_after: float | None
    total: Decimal
    paid: Decimal | None


@dataclass
class AmendmentPlan:
    deal: Deal
    request_id: str
    at: datetime
    outcome: str  # done | exception | dead
    side_lane: bool = False


@dataclass
class Plan:
    deals: list[Deal] = field(default_factory=list)
    invoices: list[InvoicePlan] = field(default_factory=list)
    amendments: list[AmendmentPlan] = field(default_factory=list)


def _to(clock: ManualClock, event: Event, seconds: float) -> None:
    clock.set(event.time + timedelta(seconds=seconds))


def kpi_registry(clock: ManualClock) -> Registry:
    """Handlers that record the flows' milestone steps at the planned times."""
    registry = Registry(default_retry=RetryPolicy(max_attempts=2, base_seconds=1, cap_seconds=1))

    @registry.on("crm.opportunity.closed_won")
    async def closed_won(ctx: HandlerContext, event: Event) -> None:
        d = event.data
        await ctx.step("crm.get_deal", lambda _k: d["deal"])
        _to(clock, event, d["billing_after"])
        await ctx.step(
            "billing.create_subscription",
            lambda _k: {"id": f"sub_{d['n']}"},
        )
        await ctx.step("crm.publish_subscription", lambda _k: [None])

    @registry.on("billing.subscription.activated")
    async def activated(ctx: HandlerContext, event: Event) -> None:
        d = event.data
        _to(clock, event, d["erp_after"])
        await ctx.step("erp.book_order", lambda _k: f"SO{d['n']}")
        for item in d["items"]:  # per-record suffixes, as a bundle's companions have
            await ctx.step(f"billing.change_quantity.{item}", lambda _k: {})

    @registry.on("billing.invoice.finalized")
    async def finalized(ctx: HandlerContext, event: Event) -> None:
        d = event.data
        await ctx.step("billing.get_invoice", lambda _k: d["invoice"])
        _to(clock, event, d["erp_after"])
        await ctx.step("erp.post_invoice", lambda _k: {"total": d["total"]})
        if d["crm_after"] is not None:
            _to(clock, event, d["crm_after"])
            await ctx.step("crm.publish_invoice", lambda _k: [None])

    @registry.on("billing.payment.succeeded")
    async def paid(ctx: HandlerContext, event: Event) -> None:
        d = event.data
        await ctx.step("billing.get_invoice", lambda _k: d["invoice"])
        await ctx.step("erp.apply_payment", lambda _k: "PAY")

    @registry.on("crm.amendment.requested")
    async def amendment(ctx: HandlerContext, event: Event) -> None:
        d = event.data
        if not event.subject.startswith("contract:"):
            ctx.emit("crm.amendment.requested", d["contract_subject"], dict(d), key="forward")
            return
        if d["outcome"] == "exception":
            raise DataError(f"amendment {d['request_id']}: seats below zero")
        if d["outcome"] == "dead":
            raise TransientError("billing timed out", system="billing")
        await ctx.step("billing.change_quantity", lambda _k: {})

    @registry.on("test.erp.work")
    async def erp_work(ctx: HandlerContext, event: Event) -> None:
        await ctx.step("erp.upsert_customer", lambda _k: "C1")

    return registry


def _deal_json(deal: Deal) -> dict[str, Any]:
    return {
        "currency": deal.currency,
        "lines": [{"amount": {"amount": str(a), "currency": deal.currency}} for a in deal.lines],
    }


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": str(amount), "currency": currency}


class History:
    """Builds the plan and plays it through the engine, one business event at a time."""

    def __init__(self, runtime: Runtime, clock: ManualClock, *, seed: int = 7) -> None:
        self.runtime, self.clock = runtime, clock
        self.rng = random.Random(seed)
        self.worker = Worker(runtime, kpi_registry(clock), lease_seconds=3600)
        self.xref = XrefStore(runtime.engine, clock)
        self.decisions = EntityDecisions(runtime.engine, clock)
        self.plan = Plan()

    async def _run(self, *batch: Event) -> None:
        self.runtime.log.append_many(list(batch))
        await self.worker.drain()

    async def deal(self, n: int, at: datetime, entity: str | None, *, erp: bool = True) -> Deal:
        deal = Deal(
            opportunity=f"006{n:012d}",
            contract=f"C-{n:05d}",
            entity=entity,
            closed_at=at,
            billing_after=float(self.rng.randint(1, 120)),
            erp_after=float(self.rng.randint(121, 4000)) if erp else None,
            lines=[Decimal(self.rng.randint(100, 99999)) / 100 for _ in range(2)],
        )
        gid = self.xref.ensure_global_id(Kind.SUBSCRIPTION, "crm", deal.opportunity, actor="test")
        if entity is not None:
            customer = self.xref.ensure_global_id(Kind.CUSTOMER, "crm", f"001{n:012d}", actor="t")
            self.decisions.decide(gid, customer, entity)
        self.clock.set(at)
        won = Event(
            id=f"closed_won:{deal.opportunity}",
            source="crm",
            type="crm.opportunity.closed_won",
            subject=deal.subject,
            time=at,
            correlation_id=f"deal-{n}",
            data={
                "opportunity_id": deal.opportunity,
                "contract_number": deal.contract,
                "n": n,
                "deal": _deal_json(deal),
                "billing_after": deal.billing_after,
            },
        )
        batch = [won]
        if erp:
            batch.append(
                new_event(
                    "billing.subscription.activated",
                    deal.subject,
                    {
                        "n": n,
                        "deal": _deal_json(deal),
                        "erp_after": deal.erp_after,
                        "items": [f"si_{n}a", f"si_{n}b"],
                    },
                    source="billing",
                    time=at,
                )
            )
        await self._run(*batch)
        self.plan.deals.append(deal)
        return deal

    async def invoice(
        self, deal: Deal, n: int, at: datetime, *, crm: bool = True, paid: bool = True
    ) -> InvoicePlan:
        total = Decimal(self.rng.randint(1000, 500000)) / 100
        plan = InvoicePlan(
            deal,
            f"in_{n}",
            at,
            float(self.rng.randint(1, 600)),
            None,
            total,
            total if paid else None,
        )
        if crm:
            plan.crm_after = plan.erp_after + self.rng.randint(1, 300)
        invoice = {
            "total": _money(total, deal.currency),
            "amount_paid": _money(total, deal.currency) if paid else None,
        }
        self.clock.set(at)
        batch = [
            new_event(
                "billing.invoice.finalized",
                deal.subject,
                {
                    "invoice": invoice,
                    "total": str(total),
                    "erp_after": plan.erp_after,
                    "crm_after": plan.crm_after,
                },
                source="billing",
                time=at,
            )
        ]
        if paid:
            batch.append(
                new_event(
                    "billing.payment.succeeded",
                    deal.subject,
                    {"invoice": invoice},
                    source="billing",
                    time=at,
                )
            )
        await self._run(*batch)
        self.plan.invoices.append(plan)
        return plan

    async def amendment(
        self, deal: Deal, n: int, at: datetime, outcome: str, *, side_lane: bool = False
    ) -> AmendmentPlan:
        plan = AmendmentPlan(deal, f"a0{n:012d}", at, outcome, side_lane)
        self.clock.set(at)
        data = {"request_id": plan.request_id, "outcome": outcome, "contract_subject": deal.subject}
        subject = f"crm-subscription:{n}" if side_lane else deal.subject
        event = new_event(
            "crm.amendment.requested", subject, data, source="crm", id=f"amendment:{n}", time=at
        )
        await self._run(event)
        if outcome == "dead":  # its second and last attempt, after the backoff
            self.clock.advance(5)
            await self.worker.drain()
        self.plan.amendments.append(plan)
        return plan
