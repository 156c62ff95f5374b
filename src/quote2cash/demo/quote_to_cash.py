"""``q2c demo``: a quarter of quote-to-cash on the three local systems, end to end.

Sales reps open accounts in both legal entities and close deals in Salesforce; the hub carries
each deal to Stripe (customer, subscription) and the ERP - Tryton, or the legacy ERP with
``erp="legacy"`` - (customer, booking, invoices, payments) and reports back to the CRM.
Customers pay by card or bank transfer (one card is declined); the ERP goes into a maintenance
window mid-run; one deal sells a product the catalog never mapped; the self-serve customers'
Stripe test clocks run a quarter of renewals. The summary compares
every invoice across the three systems to the cent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import select

from quote2cash.configuration import active_config_dir, check_config_dir
from quote2cash.demo.actors import (
    BillingTeam,
    Customers,
    GrantedRefund,
    PaymentRound,
    SalesOrg,
    months_later,
    refund_one_card_payment,
)
from quote2cash.demo.book import Book, DemoAccount, DemoDeal, build_book
from quote2cash.demo.hub import DemoHub
from quote2cash.demo.kpi_summary import kpi_lines
from quote2cash.demo.operators import DemoTeam, sign_in_team
from quote2cash.demo.reconcile import Reconciliation
from quote2cash.demo.sandbox import DemoSandbox
from quote2cash.engine.audit import Verification
from quote2cash.engine.checkpoints import CheckpointError, checkpoint_now, verify_store
from quote2cash.engine.control import resume_system, schedule_window
from quote2cash.engine.queries import EventRow, failed_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.systems import SystemLimits
from quote2cash.flows.subjects import contract_subject
from quote2cash.observability.kpis import KpiReport, compute_kpis
from quote2cash.reconcile.run import reconcile
from quote2cash.store.schema import EVENTS_WITH_STATE, event_state, events, steps

KEEP_SANDBOX = "Q2C_DEMO_KEEP_SANDBOX"
SANDBOX_LIMITS = {"erp": SystemLimits(max_concurrency=1)}
"""The sandbox ERP runs on SQLite, which takes one writer at a time; one ERP step at a time
also keeps two postings from racing over the same acknowledged Tryton warning."""


@dataclass(frozen=True)
class DemoSize:
    accounts: int
    deals: int
    self_serve: int
    months: int


FULL = DemoSize(accounts=49, deals=80, self_serve=8, months=3)
QUICK = DemoSize(accounts=9, deals=14, self_serve=2, months=1)


@dataclass
class WindowReport:
    held_subjects: int = 0
    done_during: int = 0
    crm_billing_steps_during: int = 0
    erp_steps_during: int = 0
    subscriptions_waiting_for_booking: int = 0
    in_order: bool = False


def _quarter_start() -> datetime:
    """The test clocks start now: the ERP dates invoices no later than today, and numbers them
    in date order, so a clock in the past would give invoices older than ones already posted."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class DemoRun:
    console: Console
    folder: Path
    size: DemoSize
    book: Book
    sandbox: DemoSandbox
    progress: Progress
    hub: DemoHub | None = None
    team: DemoTeam | None = None
    payments: PaymentRound = field(default_factory=PaymentRound)
    window: WindowReport = field(default_factory=WindowReport)
    renewal_months: list[str] = field(default_factory=list)
    refund: GrantedRefund | None = None
    tasks: dict[str, TaskID] = field(default_factory=dict)
    quarter_start: datetime = field(default_factory=_quarter_start)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def say(self, text: str) -> None:
        self.progress.console.print(text)

    def operators(self) -> DemoTeam:
        assert self.team is not None, "the demo's operators are signed in at its start"
        return self.team

    def show_hub(self, done: int, total: int) -> None:
        self.progress.update(self.tasks["hub"], completed=done, total=max(total, 1))


def run_demo(*, workdir: str, quick: bool, console: Console, erp: str = "tryton") -> bool:
    """Run the demo in ``workdir`` (wiped first); True only if the end state reconciles.

    The configuration is checked before any system starts: a bad file fails in a second."""
    check_config_dir(active_config_dir())
    folder = Path(workdir).resolve()
    DemoSandbox.down(folder / "sandbox")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with _log_to_file(folder / "demo.log"):
        return _run(folder, QUICK if quick else FULL, console, erp)


def _run(folder: Path, size: DemoSize, console: Console, erp: str) -> bool:
    book = build_book(
        accounts=size.accounts,
        deals=size.deals,
        self_serve=size.self_serve,
        vat_abroad=erp == "legacy",
    )
    erp_name = "the legacy ERP" if erp == "legacy" else "Tryton"
    console.rule(f"[bold]quote2cash demo: quote to cash on Salesforce, Stripe and {erp_name}")
    started = time.monotonic()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    try:
        with progress:
            boot = progress.add_task("starting the sandbox", total=None)
            sandbox = DemoSandbox.up(
                folder / "sandbox",
                lambda msg: progress.update(boot, description=msg),
                erp=erp,
            )
            progress.update(
                boot, description=f"sandbox up: Stripe, Salesforce, {erp_name}", total=1
            )
            progress.update(boot, completed=1)
            run = DemoRun(console, folder, size, book, sandbox, progress)
            findings = asyncio.run(_scenario(run))
        ok = _print_summary(run, findings)
        console.print(f"demo finished in {time.monotonic() - started:.0f} s")
        return ok
    finally:
        if not os.environ.get(KEEP_SANDBOX):
            DemoSandbox.down(folder / "sandbox")


async def _scenario(run: DemoRun) -> Findings:
    db_url = f"sqlite:///{run.folder / 'hub.sqlite'}"
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL", limits=SANDBOX_LIMITS)
    run.team = sign_in_team(
        runtime, operator="erp-admin", approver="fiona", approver_roles=("finance_approver",)
    )
    systems = run.sandbox.systems()
    try:
        async with systems:
            hub = DemoHub.build(runtime, systems, active_config_dir())
            run.hub = hub
            p = run.progress
            run.tasks["accounts"] = p.add_task(
                "sales reps open accounts", total=len(run.book.accounts)
            )
            run.tasks["deals"] = p.add_task(
                "deals closed won in Salesforce", total=len(run.book.deals)
            )
            run.tasks["hub"] = p.add_task("hub: events processed", total=1)
            run.tasks["paid"] = p.add_task("invoices paid by customers", total=None)
            run.tasks["quarter"] = p.add_task(
                "simulated quarter (Stripe test clocks)", total=run.size.months
            )
            org, customers, billing_team = await asyncio.to_thread(_actors, run)
            await _waves_and_window(run, hub, org, customers)
            await _simulated_quarter(run, hub, customers, billing_team)
            await _goodwill_refund(run, hub)
            finished = await hub.finish(run.show_hub)
            if not finished:
                run.say("[red]the hub still had pending work at the deadline[/]")
            run.progress.update(run.tasks["hub"], description="hub: events done (of logged)")
            return await _collect(run, runtime, org, finished)
    finally:
        runtime.close()


def _actors(run: DemoRun) -> tuple[SalesOrg, Customers, BillingTeam]:
    """The org admin adds the legacy product; reps open the accounts; self-serve customers
    signed up on the website earlier (each on a Stripe test clock at the quarter's start)."""
    org = SalesOrg(run.sandbox.salesforce())
    org.add_legacy_product()
    customers = Customers(run.sandbox.stripe())
    billing_team = BillingTeam(run.sandbox.stripe())
    quarter_start = run.quarter_start
    for account in run.book.accounts:
        billing_id = None
        if account.self_serve:
            clock = billing_team.new_clock(f"{account.name} (self-serve)", quarter_start)
            billing_id = customers.sign_up(account, clock)
        org.open_account(account, billing_id)
        run.progress.advance(run.tasks["accounts"])
    return org, customers, billing_team


async def _close(run: DemoRun, org: SalesOrg, deals: list[DemoDeal]) -> None:
    def work() -> None:
        for deal in deals:
            org.close_deal(deal, datetime.now(UTC).date())
            run.progress.advance(run.tasks["deals"])

    await asyncio.to_thread(work)


async def _pay(run: DemoRun, customers: Customers, *, declines: bool) -> PaymentRound:
    payer_of = {a.name: a for a in run.book.accounts}
    outcome = await asyncio.to_thread(customers.pay_open_invoices, payer_of, declines=declines)
    run.payments.card += outcome.card
    run.payments.bank_transfer += outcome.bank_transfer
    run.payments.declined += outcome.declined
    run.progress.advance(run.tasks["paid"], outcome.paid)
    return outcome


async def _waves_and_window(
    run: DemoRun, hub: DemoHub, org: SalesOrg, customers: Customers
) -> None:
    book, runtime = run.book, hub.runtime
    run.say("[bold]wave 1[/]: reps close the first deals; the hub carries them through")
    await _close(run, org, book.wave(1))
    await hub.settle(run.show_hub)

    run.say("[bold]wave 2[/]: more deals close; the hub onboards them and creates subscriptions")
    await _close(run, org, book.wave(2))
    await hub.intake_crm()
    await hub.settle(run.show_hub, billing=False)

    start = runtime.clock.now()
    schedule_window(
        runtime,
        "erp",
        start,
        start + timedelta(minutes=30),
        by=run.operators().operator,
        reason="ERP month-end maintenance",
    )
    run.say(
        "[yellow]ERP maintenance window[/] from now for 30 min: ERP work is held in order; "
        "billing and CRM keep going"
    )
    paid = await _pay(run, customers, declines=True)
    run.say(
        f"  customers pay their open invoices meanwhile: {paid.paid} paid, "
        f"declined: {', '.join(paid.declined) or 'none'}"
    )
    await hub.settle(run.show_hub)
    window = run.window
    window.held_subjects = hub.held_for("erp")
    window.subscriptions_waiting_for_booking = _waiting_for_booking(runtime)
    with runtime.engine.connect() as conn:
        during = conn.execute(select(steps.c.system).where(steps.c.completed_at >= start)).scalars()
        systems_during = list(during)
        window.done_during = len(
            conn.execute(select(event_state.c.pos).where(event_state.c.processed_at >= start)).all()
        )
    window.erp_steps_during = sum(1 for s in systems_during if s == "erp")
    window.crm_billing_steps_during = sum(1 for s in systems_during if s in ("crm", "billing"))
    run.say(
        f"  during the window: {window.done_during} events done, "
        f"{window.crm_billing_steps_during} CRM/billing calls, "
        f"{window.erp_steps_during} ERP calls; {window.held_subjects} contracts held for the ERP "
        f"({window.subscriptions_waiting_for_booking} subscriptions live in billing, booking held)"
    )
    resume_system(runtime, "erp", by=run.operators().operator, reason="maintenance finished")
    # resume_system reloads the gates before it ends the window; reload once more, or the held
    # contracts are held again until the window's scheduled end
    runtime.gates.refresh(runtime.engine, force=True)
    resumed = runtime.clock.now()
    run.say("[green]ERP back[/]: the held work drains in order")
    await hub.settle(run.show_hub)
    window.in_order = _erp_steps_in_order(runtime, since=resumed)

    await _pay(run, customers, declines=False)
    await hub.settle(run.show_hub)
    run.say("[bold]wave 3[/]: the last deals close, one of them with an unmapped product")
    await _close(run, org, book.wave(3))
    await hub.settle(run.show_hub)
    await _pay(run, customers, declines=False)
    await hub.settle(run.show_hub)


async def _simulated_quarter(
    run: DemoRun, hub: DemoHub, customers: Customers, team: BillingTeam
) -> None:
    if not team.clocks:
        return
    start = run.quarter_start
    run.say(
        f"[bold]simulated quarter[/]: {len(team.clocks)} self-serve customers' test clocks run "
        f"from {start.date()} for {run.size.months} month(s)"
    )
    for n in range(1, run.size.months + 1):
        month = months_later(start, n)
        await asyncio.to_thread(team.advance_all, month)
        run.renewal_months.append(month.date().isoformat())
        await hub.settle(run.show_hub)
        await _pay(run, customers, declines=False)
        await hub.settle(run.show_hub)
        run.progress.advance(run.tasks["quarter"])


async def _goodwill_refund(run: DemoRun, hub: DemoHub) -> None:
    """Billing gives a quarter of one card payment back; the ERP reverses that much of it."""
    run.refund = await asyncio.to_thread(refund_one_card_payment, run.sandbox.stripe())
    if run.refund is not None:
        run.say(
            f"[bold]goodwill refund[/]: billing refunds {run.refund.amount} of invoice "
            f"{run.refund.number}'s card payment"
        )
        await hub.settle(run.show_hub)


def _refund_shown(rec: Reconciliation, refund: GrantedRefund | None, erp_name: str) -> str:
    if refund is None:
        return "none (no invoice was paid by card)"
    shown = {s: rec.invoices.get(s, {}).get(refund.number) for s in ("billing", "erp", "crm")}
    billing, erp, crm = shown["billing"], shown["erp"], shown["crm"]
    if billing is None or erp is None or crm is None:
        return f"{refund.number}: missing in {[s for s, i in shown.items() if i is None]}"
    return (
        f"{refund.number}: {refund.amount} refunded in Stripe ({billing.status}); {erp_name} "
        f"{erp.status}, owes {_cents(erp.balance)} again; CRM {crm.status}, balance "
        f"{_cents(crm.balance)}"
    )


def _waiting_for_booking(runtime: Runtime) -> int:
    """Contracts whose subscription exists but whose activation (ERP booking) is still pending."""
    with runtime.engine.connect() as conn:
        return len(
            conn.execute(
                select(events.c.subject)
                .select_from(EVENTS_WITH_STATE)
                .where(
                    events.c.type == "billing.subscription.activated",
                    event_state.c.status == "pending",
                )
            ).all()
        )


def _erp_steps_in_order(runtime: Runtime, *, since: datetime) -> bool:
    """Every contract's ERP calls made after the window ran in its events' sequence order."""
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(events.c.subject, events.c.sequence, steps.c.completed_at)
            .join(steps, steps.c.event_pos == events.c.pos)
            .where(steps.c.system == "erp", steps.c.completed_at >= since)
            .order_by(steps.c.completed_at)
        ).all()
    last: dict[str, int] = {}
    for subject, sequence, _ in rows:
        if sequence < last.get(subject, 0):
            return False
        last[subject] = sequence
    return bool(rows)


def _declined_in_crm(org: SalesOrg, numbers: list[str]) -> list[str]:
    shown = []
    for number in numbers:
        rows = org.sf.query(
            "SELECT Status__c, Balance__c, Amount__c FROM Invoice__c "
            f"WHERE Invoice_Number__c = '{number}'"
        )["records"]
        for row in rows:
            shown.append(
                f"{number}: {row['Status__c']}, balance {_cents(row['Balance__c'])} "
                f"of {_cents(row['Amount__c'])}"
            )
    return shown


@dataclass
class Findings:
    """What the demo read back at the end, from the three systems and the hub's store."""

    rec: Reconciliation
    exceptions: list[EventRow]
    expected_exception: list[EventRow]
    untouched: bool
    audit: Verification
    finished: bool
    declined_in_crm: list[str]
    discounts: DiscountCheck
    kpis: KpiReport


def _cents(value: object) -> str:
    return f"{Decimal(str(value)):,.2f}"


async def _collect(run: DemoRun, runtime: Runtime, org: SalesOrg, finished: bool) -> Findings:
    assert run.hub is not None
    rec = Reconciliation.of(await reconcile(runtime, run.hub.systems))
    exceptions = failed_events(runtime)
    legacy = run.book.unmapped_deal
    expected = [
        e
        for e in exceptions
        if e.subject == contract_subject(legacy.contract_number) and e.category == "mapping"
    ]
    untouched = await _untouched(run, org, legacy.account)
    declined = await asyncio.to_thread(_declined_in_crm, org, run.payments.declined)
    with contextlib.suppress(CheckpointError):  # verify_store names a missing checkpoint
        checkpoint_now(runtime)
    audit = verify_store(runtime)
    discounts = await _discounts_billed(run, org)
    kpis = compute_kpis(
        runtime.engine, since=run.started_at - timedelta(minutes=1), until=datetime.now(UTC)
    )
    return Findings(
        rec, exceptions, expected, untouched, audit, finished, declined, discounts, kpis
    )


def _print_summary(run: DemoRun, found: Findings) -> bool:
    """Print the summary; True only if every check holds."""
    console, book, rec, audit = run.console, run.book, found.rec, found.audit
    exceptions, expected_exception = found.exceptions, found.expected_exception
    unexpected = [e for e in exceptions if e not in expected_exception]
    legacy = book.unmapped_deal
    mapped_deals = len(book.deals) - 1
    differences = rec.differences()
    erp = run.sandbox.erp_name

    console.rule("[bold]summary")
    facts = Table(show_header=False, box=None)
    facts.add_column("what")
    facts.add_column("value")
    entities = {a.entity for a in book.accounts}
    facts.add_row(
        "accounts",
        f"{len(book.accounts)} ({sum(a.entity == 'US' for a in book.accounts)} Q2C Inc. USD, "
        f"{sum(a.entity == 'DE' for a in book.accounts)} Q2C GmbH EUR; "
        f"entities {sorted(entities)})",
    )
    facts.add_row(
        "deals activated",
        f"{rec.crm_active_deals} of {len(book.deals)} Active in the CRM; "
        f"{rec.subscriptions} subscriptions in Stripe; {rec.erp_bookings} bookings in {erp}",
    )
    facts.add_row(
        "customers",
        f"{rec.billing_customers} in Stripe, {rec.erp_parties} in {erp} (hub-onboarded)",
    )
    facts.add_row(
        "invoices posted",
        f"{len(rec.invoices.get('billing', {}))} in Stripe, {len(rec.invoices.get('erp', {}))} "
        f"posted in {erp}, {len(rec.invoices.get('crm', {}))} Invoice__c in the CRM",
    )
    paid_erp = sum(1 for i in rec.invoices.get("erp", {}).values() if i.paid)
    paid_crm = sum(1 for i in rec.invoices.get("crm", {}).values() if i.paid)
    facts.add_row(
        "payments applied",
        f"{run.payments.card} by card, {run.payments.bank_transfer} by bank transfer; "
        f"{paid_erp} invoices paid in {erp}, {paid_crm} Paid in the CRM",
    )
    facts.add_row(
        "declined card",
        "; ".join(found.declined_in_crm) or "none (this run had no declining payer)",
    )
    facts.add_row("discounts", found.discounts.shown(erp))
    w = run.window
    facts.add_row("card refund", _refund_shown(rec, run.refund, erp))
    facts.add_row(
        "ERP maintenance window",
        f"{w.held_subjects} contracts held; {w.done_during} events and "
        f"{w.crm_billing_steps_during} CRM/billing calls went ahead, {w.erp_steps_during} ERP "
        f"calls; drained in order: {'yes' if w.in_order else 'NO'}",
    )
    facts.add_row(
        "simulated quarter",
        f"test clocks advanced to {', '.join(run.renewal_months) or '-'}",
    )
    facts.add_row(
        "audit chain", f"intact ({audit.checked} entries)" if audit.ok else "[red]BROKEN[/]"
    )
    for name, shown in kpi_lines(found.kpis):
        facts.add_row(name, escape(shown))
    console.print(facts)

    amounts = Table(title="invoice totals per currency, read from each system")
    erp_column = "Tryton ERP" if erp == "Tryton" else "legacy ERP"
    for column in ("currency", "Stripe", erp_column, "CRM Invoice__c", "paid (S / E / C)", ""):
        amounts.add_column(column, justify="right")
    for currency, per in sorted(rec.totals().items()):
        b, e, c = per["billing"], per["erp"], per["crm"]
        same = b.amount == e.amount == c.amount and b.count == e.count == c.count
        amounts.add_row(
            currency,
            f"{b.amount:,.2f} ({b.count})",
            f"{e.amount:,.2f} ({e.count})",
            f"{c.amount:,.2f} ({c.count})",
            f"{b.paid_count} / {e.paid_count} / {c.paid_count}",
            "[green]equal to the cent[/]" if same else "[red]DIFFERENT[/]",
        )
    console.print(amounts)
    console.print(
        f"three-way reconciliation (q2c reconcile): {len(differences)} drift(s) in "
        f"{_read_counts(rec)}",
        highlight=False,
    )
    for problem in differences[:20]:
        console.print(f"[red]drift[/]: {escape(problem)}")

    queue = Table(title="exception queue")
    for column in ("type", "subject", "category", "reason"):
        queue.add_column(column)
    for row in exceptions:
        queue.add_row(row.type, row.subject, row.category or "-", row.last_error or "")
    console.print(queue)
    console.print(
        f"unmapped product deal {legacy.contract_number}: "
        + (
            "nothing was written to any system"
            if found.untouched
            else "[red]a system was written[/]"
        )
    )
    _look_further(console, run.folder)

    checks = {
        "q2c reconcile finds no drift across the three systems": rec.reconciled,
        "every mapped deal activated": rec.crm_active_deals == mapped_deals
        and rec.subscriptions == mapped_deals
        and rec.erp_bookings == mapped_deals,
        "the unmapped product is in the exception queue": len(expected_exception) == 1,
        "discounted deals billed and booked at the CRM's price": found.discounts.matching
        == found.discounts.deals,
        "no unexpected exceptions": not unexpected,
        "the unmapped deal touched no system": found.untouched,
        "ERP held during the window and drained in order": w.erp_steps_during == 0
        and w.held_subjects > 0
        and w.in_order,
        "a declined card shows in the CRM": bool(found.declined_in_crm)
        and len(found.declined_in_crm) == len(run.payments.declined)
        and all(": Open," in d or ": Overdue," in d for d in found.declined_in_crm),
        "a refund is reversed in the ERP and shown in the CRM": _refund_reversed(rec, run.refund),
        "nothing left pending": found.finished,
        "audit chain intact": audit.ok,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        console.print("[red]NOT reconciled[/]: " + "; ".join(failed))
        return False
    console.print("[green bold]reconciled[/]: " + "; ".join(checks))
    return True


def _read_counts(rec: Reconciliation) -> str:
    counts = rec.report.counts
    return "; ".join(
        f"{system} {n['customer']} customers, {n['contract']} contracts, {n['invoice']} invoices"
        for system, n in sorted(counts.items())
    )


def _refund_reversed(rec: Reconciliation, refund: GrantedRefund | None) -> bool:
    if refund is None:
        return True
    erp = rec.invoices.get("erp", {}).get(refund.number)
    crm = rec.invoices.get("crm", {}).get(refund.number)
    return (
        erp is not None
        and crm is not None
        and not erp.paid
        and erp.balance == crm.balance == refund.amount.amount
        and crm.status in ("Partially Refunded", "Refunded")
    )


@dataclass(frozen=True)
class DiscountCheck:
    """Discounted deals whose first invoice before tax (Stripe, the ERP) and ERP booking equal
    the CRM's price."""

    deals: int
    matching: int
    percents: tuple[Decimal, ...]

    def shown(self, erp: str) -> str:
        if not self.deals:
            return "none in this book"
        off = " / ".join(f"{p:f} %" for p in self.percents)
        return (
            f"{self.deals} volume deals at {off} off seats (Stripe coupons): first invoice in "
            f"Stripe and {erp} (before tax) and the {erp} booking equal the CRM's price for "
            f"{self.matching} of {self.deals}"
        )


async def _discounts_billed(run: DemoRun, org: SalesOrg) -> DiscountCheck:
    """Read each discounted deal back: the CRM's amount, billing's first invoice before tax, the
    ERP invoice with that invoice number before tax and the ERP sale booked for the contract must
    all be equal, and the ERP invoice's total (tax included) billing's total."""
    deals = [
        d
        for d in run.book.deals
        if d is not run.book.unmapped_deal and any(line.discount for line in d.lines)
    ]
    client = run.sandbox.stripe()
    matching = 0
    async with run.sandbox.erp_reader() as erp:
        for deal in deals:
            opp = org.sf.Opportunity.get(org.opportunities[deal.contract_number])
            crm = Decimal(str(opp.get("Amount") or 0))
            first = [
                i
                for i in client.v1.invoices.list(
                    params={"subscription": str(opp.get("Subscription_Id__c") or "")}
                ).auto_paging_iter()
                if i.billing_reason == "subscription_create"
            ]
            if len(first) != 1:
                continue
            billed = Decimal(first[0].total_excluding_tax or 0) / 100
            gross = Decimal(first[0].total) / 100
            posted = await erp.invoice_amounts(str(first[0].number))
            sales = await erp.sale_totals(deal.contract_number)
            if crm == billed and posted == [(crm, gross)] and sales == [crm]:
                matching += 1
    percents = sorted({line.discount for d in deals for line in d.lines if line.discount})
    return DiscountCheck(len(deals), matching, tuple(percents))


async def _untouched(run: DemoRun, org: SalesOrg, account: DemoAccount) -> bool:
    """No customer, subscription or party for the account; its deal carries no billing id."""
    client = run.sandbox.stripe()
    in_billing = [
        c
        for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()
        if c.name == account.name
    ]
    async with run.sandbox.erp_reader() as erp:
        in_erp = await erp.customers_named(account.name)
    opportunity = org.opportunities[run.book.unmapped_deal.contract_number]
    opp = org.sf.Opportunity.get(opportunity)
    acct = org.sf.Account.get(org.accounts[account.key])
    return (
        not in_billing
        and not in_erp
        and not opp.get("Subscription_Id__c")
        and not acct.get("Hub_Global_Id__c")
    )


def _look_further(console: Console, folder: Path) -> None:
    db = f"sqlite:///{folder / 'hub.sqlite'}"
    console.print("look further:")
    for command in (
        f"q2c events list --db {db} --limit 20",
        f"q2c dlq list --db {db}",
        f"q2c events show <event id> --db {db}",
        f"q2c systems status --db {db}",
        f"q2c audit verify --db {db}",
    ):
        console.print(escape(f"  {command}"), highlight=False)
    console.print(escape(f"  structured log (JSON, correlation ids): {folder / 'demo.log'}"))
    if os.environ.get(KEEP_SANDBOX):
        console.print(
            escape(
                f"  the sandbox keeps running: q2c systems check --workdir {folder / 'sandbox'}; "
                f"stop it with q2c sandbox down --workdir {folder / 'sandbox'}"
            )
        )
    else:
        console.print(f"  (set {KEEP_SANDBOX}=1 to keep the three systems running afterwards)")


@contextlib.contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """The hub's JSON log goes to the demo's folder while it runs (the console shows progress);
    the logging setup is put back afterwards."""
    from quote2cash.observability.logging import JsonFormatter
    from quote2cash.observability.redact import RedactingFilter, install_redaction
    from quote2cash.private_files import PrivateFileHandler

    install_redaction()
    handler = PrivateFileHandler(path)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("quote2cash")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    try:
        yield
    finally:
        root.handlers[:], root.level, root.propagate = saved
        handler.close()
