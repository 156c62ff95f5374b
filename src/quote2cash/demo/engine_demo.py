"""``q2c demo``: the engine's guarantees shown on a small book of contracts.

Until the business flows land, the demo drives the engine with simulated target systems (an
in-process ledger per system that honours idempotency keys): a few hundred events across
contracts, an ERP maintenance window, one permanent failure, and a replay that only a second
person may approve. It ends with a summary and the audit check.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from quote2cash.demo.operators import sign_in_team
from quote2cash.engine.checkpoints import CheckpointError, checkpoint_now, verify_store
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.control import pause_system, resume_system
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.queries import failed_events, status_counts
from quote2cash.engine.registry import Registry
from quote2cash.engine.replay import Selector, approve_replay, request_replay
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.identity import NotAllowed

KNOWN_CURRENCIES = {"USD", "EUR"}


@dataclass
class SimulatedSystem:
    """A target system that deduplicates by idempotency key, as Stripe and our ERP calls do."""

    name: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: int = 0

    def write(self, key: str, record: dict[str, Any]) -> str:
        self.calls += 1
        if key not in self.records:
            self.records[key] = record
        return f"{self.name}-{len(self.records)}"


@dataclass
class DemoBook:
    billing: SimulatedSystem = field(default_factory=lambda: SimulatedSystem("billing"))
    erp: SimulatedSystem = field(default_factory=lambda: SimulatedSystem("erp"))
    order_seen: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    currency_fixes: dict[str, str] = field(default_factory=dict)


def build_registry(book: DemoBook) -> Registry:
    registry = Registry()

    @registry.on("crm.opportunity.closed_won", systems=("billing",))
    async def activate(ctx: HandlerContext, event: Event) -> None:
        await ctx.step(
            "billing.create_subscription",
            lambda key: book.billing.write(key, {"seats": event.data["seats"]}),
        )
        book.order_seen[event.subject].append(event.sequence or 0)

    @registry.on("billing.invoice.finalized", systems=("erp",))
    async def post_invoice(ctx: HandlerContext, event: Event) -> None:
        currency = book.currency_fixes.get(event.data["currency"], event.data["currency"])
        if currency not in KNOWN_CURRENCIES:
            raise DataError(
                f"invoice {event.data['invoice']}: field 'currency' is {currency!r}; "
                f"expected one of {sorted(KNOWN_CURRENCIES)}",
                system="erp",
            )
        await ctx.step(
            "erp.post_invoice",
            lambda key: book.erp.write(key, {"amount": event.data["amount"], "currency": currency}),
        )
        book.order_seen[event.subject].append(event.sequence or 0)

    @registry.on("billing.payment.succeeded", systems=("erp",))
    async def apply_payment(ctx: HandlerContext, event: Event) -> None:
        await ctx.step(
            "erp.apply_payment",
            lambda key: book.erp.write(key, {"amount": event.data["amount"]}),
        )
        book.order_seen[event.subject].append(event.sequence or 0)

    return registry


def make_events(contracts: int) -> list[Event]:
    out: list[Event] = []
    for n in range(contracts):
        subject = f"contract:C-{1000 + n}"
        cid = f"deal-{1000 + n}"
        seats = 5 + n % 20
        amount = Decimal(seats) * Decimal("49.00")
        currency = "EUR" if n % 3 == 0 else "USD"
        if n == 7:
            currency = "EUX"  # the injected bad record
        out.append(
            new_event(
                "crm.opportunity.closed_won",
                subject,
                {"seats": seats},
                source="demo.crm",
                correlation_id=cid,
            )
        )
        for month in range(1, 3):
            inv = f"INV-{1000 + n}-{month}"
            out.append(
                new_event(
                    "billing.invoice.finalized",
                    subject,
                    {"invoice": inv, "amount": amount, "currency": currency},
                    source="demo.billing",
                    correlation_id=cid,
                )
            )
            out.append(
                new_event(
                    "billing.payment.succeeded",
                    subject,
                    {"invoice": inv, "amount": amount},
                    source="demo.billing",
                    correlation_id=cid,
                )
            )
    return out


def run_demo(*, workdir: str, quick: bool, console: Console) -> bool:
    folder = Path(workdir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _log_to_file(folder / "demo.log")
    runtime = Runtime.open(f"sqlite:///{folder / 'demo.sqlite'}", sqlite_synchronous="NORMAL")
    book = DemoBook()
    worker = Worker(runtime, build_registry(book), batch_size=100, max_subjects=25)
    contracts = 20 if quick else 60
    batch = make_events(contracts)
    console.rule("[bold]quote2cash engine demo")
    console.print(f"{len(batch)} events across {contracts} contracts; store: {folder}/demo.sqlite")

    team = sign_in_team(runtime)
    alice, bob = team.operator, team.approver
    console.print(
        "operators: admin added alice (operator) and bob (operator, finance approver); "
        "each signed in with their own password"
    )
    pause_system(runtime, "erp", by=alice, reason="ERP month-end maintenance")
    console.print("ERP paused for maintenance: its work is held in order; billing keeps flowing")

    with Progress(console=console) as progress:
        task = progress.add_task("appending and processing", total=len(batch))
        for start in range(0, len(batch), 50):
            chunk = batch[start : start + 50]
            runtime.log.append_many(chunk)
            asyncio.run(worker.drain())
            progress.advance(task, len(chunk))
    counts = status_counts(runtime)
    console.print(
        f"during the window: {counts.get('done', 0)} done, "
        f"{counts.get('pending', 0)} held for the ERP, billing calls {book.billing.calls}"
    )

    resume_system(runtime, "erp", by=alice)
    asyncio.run(worker.drain())
    failed = failed_events(runtime)
    for row in failed:
        console.print(f"[yellow]exception[/] {row.type} {row.subject}: {row.last_error}")
    held_counts = status_counts(runtime)
    console.print(
        f"after resume: {held_counts.get('done', 0)} done; "
        f"{held_counts.get('pending', 0)} waiting behind the exception (same contract only)"
    )

    # A steward fixes the currency mapping, then asks for a replay; a second person approves.
    book.currency_fixes["EUX"] = "EUR"
    request = request_replay(
        runtime,
        Selector(event_ids=tuple(r.id for r in failed)),
        by=alice,
        reason="currency mapping fixed (EUX -> EUR)",
    )
    try:
        approve_replay(runtime, request.id, by=alice)
    except NotAllowed as refused:
        console.print(f"[cyan]maker-checker[/]: {refused}")
    approve_replay(runtime, request.id, by=bob, note="checked the mapping fix")
    asyncio.run(worker.drain())

    final = status_counts(runtime)
    in_order = all(seq == sorted(seq) for seq in book.order_seen.values())
    duplicates = sum(len(v) - len(set(v)) for v in book.order_seen.values())
    with contextlib.suppress(CheckpointError):  # verify_store names a missing checkpoint
        checkpoint_now(runtime)
    audit = verify_store(runtime)
    table = Table(title="summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in [
        ("events processed", final.get("done", 0)),
        ("events still pending", final.get("pending", 0)),
        ("exceptions now", final.get("exception", 0) + final.get("dead", 0)),
        ("subscriptions created in billing", len(book.billing.records)),
        ("ERP postings (invoices + payments)", len(book.erp.records)),
        ("per-contract order kept", "yes" if in_order else "NO"),
        ("duplicated side effects", duplicates),
        ("audit log", f"intact ({audit.checked} entries)" if audit.ok else "BROKEN"),
    ]:
        table.add_row(label, str(value))
    console.print(table)
    db = f"sqlite:///{folder / 'demo.sqlite'}"
    console.print(f"structured log (JSON, with correlation ids): {folder / 'demo.log'}")
    console.print("look further:")
    for cmd in ("events list", "dlq list", "replay list", "systems status", "audit verify"):
        console.print(f"  q2c {cmd} --db {db}")
    runtime.close()
    expected_erp = contracts * 4
    return (
        in_order
        and audit.ok
        and final.get("pending", 0) == 0
        and duplicates == 0
        and len(book.erp.records) == expected_erp
        and len(book.billing.records) == contracts
    )


def _log_to_file(path: Path) -> None:
    import logging

    from quote2cash.observability.logging import JsonFormatter
    from quote2cash.private_files import PrivateFileHandler

    handler = PrivateFileHandler(path)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("quote2cash")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
