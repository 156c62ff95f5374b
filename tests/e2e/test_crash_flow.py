"""Crash trials on the new-business flow: real worker processes killed with SIGKILL.

Each trial forks a worker process that polls the CRM and billing and drains the log against the
shared SQLite store and the three real systems (the emulators answer from this process's threads
over HTTP; Tryton is its own process). The parent kills it after a random delay; the worker also
kills itself, with a small probability, right after an external write returned and before its
step is recorded (the most adversarial point). Between trials sales reps close deals and
customers pay their invoices. After the trials a last worker drains everything; then each system
is read directly: no customer, subscription, invoice or payment twice, every deal activated once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import traceback
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import LONG
from contract.crm.salesforce_harness import Line
from e2e.conftest import CONFIG, World, sf_products
from quote2cash.engine.queries import failed_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.systems import SystemLimits
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.deps import FlowDeps
from quote2cash.flows.intake import poll_billing, poll_crm
from quote2cash.store.schema import EVENTS_WITH_STATE, event_state, events, steps, subjects

TRIALS = 300 if LONG else 30
DEALS = 40 if LONG else 14
SELF_KILL = 0.08
LIMITS = {"erp": SystemLimits(max_concurrency=1)}
WRITES = {
    "crm": ("publish_status",),
    "erp": ("upsert_customer", "book_order", "post_invoice", "apply_payment"),
    "billing": ("upsert_customer", "create_subscription"),
}


class KillAfterWrite:
    """A role whose writes may kill this process right after the system answered: the side
    effect happened, the step that made it is not recorded."""

    def __init__(self, inner: Any, system: str, rng: random.Random, p: float, record: Path) -> None:
        self._inner, self._system, self._rng, self._p = inner, system, rng, p
        self._writes, self._record = WRITES[system], record

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._writes:
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            if self._rng.random() < self._p:
                self._die(name)
            return result

        return write

    def _die(self, name: str) -> None:
        with open(self._record, "a") as record:
            record.write(f"{self._system}.{name}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def worker_process(db_url: str, world: World, seed: int, self_kill: float, kills: Path) -> None:
    """Body of a forked worker: its own store engine, connectors and event loop."""
    try:
        rng = random.Random(seed)
        runtime = Runtime.open(db_url, initialise=False, sqlite_synchronous="NORMAL", limits=LIMITS)

        async def main() -> None:
            systems = world.systems()
            async with systems:
                deps = FlowDeps.build(runtime, systems, CONFIG)
                deps.crm_role = KillAfterWrite(systems.crm, "crm", rng, self_kill, kills)
                deps.erp_role = KillAfterWrite(systems.erp, "erp", rng, self_kill, kills)
                deps.billing_role = KillAfterWrite(
                    systems.billing, "billing", rng, self_kill, kills
                )
                worker = Worker(
                    runtime,
                    build_registry(deps),
                    batch_size=rng.choice([5, 50]),
                    commit_interval=0.05,
                )
                worker.recover_dead_leases()
                assert systems.crm is not None and systems.billing is not None
                for _ in range(30):
                    new = await poll_crm(runtime, systems.crm)
                    new += await poll_billing(runtime, systems.billing)
                    report = await worker.drain()
                    if new == 0 and report.processed == 0:
                        return

        asyncio.run(main())
        os._exit(0)
    except BaseException:
        traceback.print_exc()
        os._exit(3)


def run_trial(
    db_url: str, world: World, seed: int, self_kill: float, kill_after: float | None, kills: Path
) -> str:
    """Fork a worker; SIGKILL it after ``kill_after`` seconds if still running. Returns how it
    ended: ``killed`` (by us), ``self-killed``, ``finished``."""
    pid = os.fork()
    if pid == 0:
        worker_process(db_url, world, seed, self_kill, kills)
    deadline = time.monotonic() + (kill_after if kill_after is not None else 120.0)
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            killed = True
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0, "the worker crashed (see its traceback above)"
        return "finished"
    assert os.WTERMSIG(status) == signal.SIGKILL
    if killed:
        assert kill_after is not None, "a worker without kill points did not finish in time"
        return "killed"
    return "self-killed"


def pending(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(
                    event_state.join(subjects, subjects.c.subject == event_state.c.subject)
                )
                .where(event_state.c.status == "pending", subjects.c.held_by.is_(None))
            ).scalar_one()
        )


def recorded_steps(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(steps)).scalar_one())


class Business:
    """Sales reps closing deals and customers paying, between the trials."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.client = world.stripe()
        self.products = sf_products(world.desk)
        self.deals: dict[str, tuple[str, str, str]] = {}
        """contract number -> (account name, account id, opportunity id)"""

    def close_deal(self) -> None:
        n = len(self.deals) + 1
        german = n % 2 == 0
        name = f"Crash Trial {n:02d} {'GmbH' if german else 'Inc.'}"
        address = (
            {"BillingCity": "Köln", "BillingPostalCode": "50667", "BillingCountryCode": "DE"}
            if german
            else {"BillingCity": "Austin", "BillingPostalCode": "78701", "BillingCountryCode": "US"}
        )
        currency = "EUR" if german else "USD"
        account = self.world.desk.account(
            name, currency=currency, BillingStreet="1 Main", **address
        )
        lines = [Line(self.products["PLAT-SEAT"], 2 + n, "45.00" if german else "49.00")]
        if n % 3 == 0:
            lines.append(Line(self.products["SUPPORT-PREM"], 1, "179.00" if german else "199.00"))
        number = f"C-CRASH-{n:03d}"
        opportunity = self.world.desk.deal(
            account, currency, lines, name=name, Contract_Number__c=number
        )
        self.deals[number] = (name, account, opportunity)

    def pay_open_invoices(self) -> int:
        paid = 0
        for invoice in self.client.v1.invoices.list(
            params={"status": "open", "limit": 100}
        ).auto_paging_iter():
            self.client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})
            paid += 1
        return paid


@pytest.mark.slow
def test_sigkill_during_new_business_duplicates_nothing_in_any_system(
    world: World, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL", limits=LIMITS)
    business = Business(world)
    rng = random.Random(20261126)
    kills = tmp_path / "self-kills.txt"
    kills.touch()
    outcomes: Counter[str] = Counter()
    for trial in range(TRIALS):
        if len(business.deals) < DEALS and trial % max(TRIALS // DEALS // 2, 1) == 0:
            business.close_deal()
        business.pay_open_invoices()
        runtime.engine.dispose()  # no pooled connection crosses the fork
        delay = rng.uniform(0.05, 3.0)  # long enough for a worker to get going on a slow box
        outcomes[run_trial(db_url, world, trial, SELF_KILL, delay, kills)] += 1
    steps_in_trials = recorded_steps(runtime)
    while len(business.deals) < DEALS:
        business.close_deal()

    # A last worker without kills drains everything; customers pay what is still open.
    deadline = time.monotonic() + 180
    while True:
        runtime.engine.dispose()
        run_trial(db_url, world, 10_000, 0.0, None, kills)
        if business.pay_open_invoices() == 0 and pending(runtime) == 0:
            break
        assert time.monotonic() < deadline, f"{pending(runtime)} events still pending"
        time.sleep(0.1)  # a retry may be due a moment later
    after_write = Counter(kills.read_text().split())
    print(
        f"trials: {dict(outcomes)}; killed right after: {dict(after_write)}; steps recorded "
        f"during the trials: {steps_in_trials} of {recorded_steps(runtime)}"
    )
    assert steps_in_trials >= recorded_steps(runtime) // 2, "the trials barely got going"
    assert outcomes["killed"] + outcomes["self-killed"] >= TRIALS // 2, outcomes
    # Every self-kill left its mark; a child that killed itself just as our timer fired is
    # counted as killed by us (it was already a zombie), so marks may exceed self-kills.
    marks = sum(after_write.values())
    assert outcomes["self-killed"] <= marks <= outcomes["self-killed"] + outcomes["killed"]
    assert marks >= 1
    assert len({k.split(".")[0] for k in after_write}) >= 2, after_write
    assert failed_events(runtime) == [], [e.last_error for e in failed_events(runtime)]

    asyncio.run(assert_nothing_twice(world, business))
    assert_activated_once(runtime, business)
    runtime.close()


async def assert_nothing_twice(world: World, business: Business) -> None:
    client = business.client
    names = {name: number for number, (name, _, _) in business.deals.items()}

    # Billing (Stripe SDK): one customer per account, one subscription per deal, one invoice per
    # subscription, each paid once.
    customers = [c for c in client.v1.customers.list().auto_paging_iter() if c.name in names]
    assert sorted(Counter(c.name for c in customers).values()) == [1] * len(names)
    subscriptions = list(client.v1.subscriptions.list(params={"status": "all"}).auto_paging_iter())
    per_contract = Counter(s.metadata.to_dict().get("contract_number") for s in subscriptions)
    assert {n: per_contract[n] for n in business.deals} == dict.fromkeys(business.deals, 1)
    invoices = list(client.v1.invoices.list().auto_paging_iter())
    per_customer = Counter(str(i.customer) for i in invoices)
    assert sorted(per_customer[c.id] for c in customers) == [1] * len(names)
    assert {i.status for i in invoices} == {"paid"}
    stripe_totals = {str(i.number): Decimal(i.total) / 100 for i in invoices}

    # ERP (JSON-RPC): one party per account; one booking, one posted invoice and one payment
    # per deal.
    async with world.erp_client() as erp:
        parties = await erp.model("party.party").search_read(
            [("name", "in", list(names))], ["name"]
        )
        assert sorted(Counter(p["name"] for p in parties).values()) == [1] * len(names)
        party_ids = [p["id"] for p in parties]
        sales = await erp.model("sale.sale").search_read(
            [("party", "in", party_ids)], ["party", "state"]
        )
        assert sorted(Counter(s["party"] for s in sales).values()) == [1] * len(names)
        erp_invoices = await erp.model("account.invoice").search_read(
            [("party", "in", party_ids), ("type", "=", "out")],
            ["party", "reference", "total_amount", "state", "amount_to_pay"],
        )
        assert sorted(Counter(i["party"] for i in erp_invoices).values()) == [1] * len(names)
        assert {i["reference"]: i["total_amount"] for i in erp_invoices} == stripe_totals
        assert {i["state"] for i in erp_invoices} == {"paid"}
        payments = await erp.model("account.move").search_read(
            [("description", "like", "q2c-payment:%")], ["description"]
        )
        assert len(payments) == len(erp_invoices)
        assert len({p["description"] for p in payments}) == len(payments)

    # CRM (simple-salesforce): one Invoice__c per invoice, paid; every deal active.
    sf = world.desk.sf
    rows = sf.query_all("SELECT Invoice_Number__c, Amount__c, Status__c FROM Invoice__c")["records"]
    assert sorted(Counter(r["Invoice_Number__c"] for r in rows).values()) == [1] * len(rows)
    assert {r["Invoice_Number__c"]: Decimal(str(r["Amount__c"])) for r in rows} == stripe_totals
    assert {r["Status__c"] for r in rows} == {"Paid"}
    for number, (_, account, opportunity) in business.deals.items():
        opp = sf.Opportunity.get(opportunity)
        assert opp["Subscription_Status__c"] == "Active", number
        assert per_contract[number] == 1
        assert sf.Account.get(account)["Billing_Customer_Id__c"] in {c.id for c in customers}


def assert_activated_once(runtime: Runtime, business: Business) -> None:
    """In the hub: each deal's activation logged once and booked in the ERP by one step."""
    with runtime.engine.connect() as conn:
        activations = Counter(
            conn.execute(
                select(events.c.subject)
                .select_from(EVENTS_WITH_STATE)
                .where(
                    events.c.type == "billing.subscription.activated",
                    event_state.c.status == "done",
                )
            ).scalars()
        )
        bookings = Counter(
            conn.execute(
                select(events.c.subject)
                .join(steps, steps.c.event_pos == events.c.pos)
                .where(steps.c.name == "erp.book_order")
            ).scalars()
        )
    expected = {f"contract:{n}": 1 for n in business.deals}
    assert dict(activations) == expected
    assert dict(bookings) == expected
