"""The legacy ERP's file interface: invoices per second end to end through the connector, against
the ERP batch's own raw rate on the same files, in the same run.

End to end: a real legacy ERP process (SOAP + a batch every ``--batch-seconds``) and the hub's
``LegacyErp`` connector posting N invoices of L lines, ``--concurrency`` at a time, as the hub's
workers would: each ``post_invoice`` asks SOAP whether the reference is known, writes its drop
file, waits for the batch's acknowledgement and reads the posted document back over SOAP.
Raw: the files that run archived, copied into a fresh drop folder of fresh books (same customers,
same numbers) and fed to the batch processor directly in this process: no connector, no SOAP,
no waiting for the schedule. Both phases check every invoice was posted (an ack with a document,
no error file). Half the customers are Q2C GmbH's (19 % VAT per line), half Q2C Inc.'s.

CPU seconds are reported per phase (this process, and the ERP process from /proc) because the
machine may be shared: wall-clock rates move with its load, CPU per invoice much less.

    python benchmarks/legacy_erp_files.py            # 2,000 invoices x 5 lines, batch every 1 s
    python benchmarks/legacy_erp_files.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

SRC = Path(__file__).parents[1] / "src"
sys.path.insert(0, str(SRC))
os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])

from quote2cash.canonical import (  # noqa: E402
    Address,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    Ref,
)
from quote2cash.connectors.legacy_erp import LegacyErp, LegacyErpConfig  # noqa: E402
from quote2cash.sandbox.legacy_erp import LegacyErpSandbox  # noqa: E402
from quote2cash.sandbox.legacy_erp.batch import prepare, run_batch  # noqa: E402
from quote2cash.sandbox.legacy_erp.books import Books, CustomerData  # noqa: E402

ENTITIES = {
    "US": ("USD", Decimal(0), Address(line1="1 Main St", city="Austin", country="US")),
    "DE": ("EUR", Decimal("0.19"), Address(line1="Hauptstr. 5", city="Berlin", country="DE")),
}
ITEMS = ("PLAT-SEAT", "SUPPORT-PREM", "API-CALLS")
TICKS = os.sysconf("SC_CLK_TCK")
PERIOD = (dt.date(2027, 1, 1), dt.date(2027, 2, 1))


def entity_of(index: int) -> str:
    return "DE" if index % 2 else "US"


def customer(run: str, index: int) -> Customer:
    entity = entity_of(index)
    return Customer(
        global_id=f"bench-{run}-{index}",
        name=f"Bench customer {run} {index}",
        address=ENTITIES[entity][2],
    )


def invoice(run: str, number: int, party: str, entity: str, lines: int) -> Invoice:
    """Invoice ``number`` of L lines for ERP customer ``party``; taxed lines carry billing's tax
    (rate x amount, half up), as the hub posts them."""
    currency, rate, _ = ENTITIES[entity]
    items = []
    for index in range(lines):
        quantity = Decimal(1 + (number + index) % 7)
        unit = Decimal("19.99") + index
        amount = Money(unit * quantity, currency)
        tax = Money.quantize(amount.amount * rate, currency) if rate else None
        items.append(
            InvoiceLine(
                description=f"{ITEMS[index % len(ITEMS)]} line {index + 1}",
                product=Ref.external("erp", ITEMS[index % len(ITEMS)]),
                quantity=quantity,
                unit_amount=unit,
                amount=amount,
                tax=tax,
                service_start=PERIOD[0],
                service_end=PERIOD[1],
            )
        )
    tax = Money.sum((line.tax for line in items if line.tax is not None), currency)
    subtotal = Money.sum((line.amount for line in items), currency)
    return Invoice(
        number=f"INV-{run}-{number:06d}",
        customer=Ref(global_id=f"bench-{run}", external_ids={"erp": party}),
        currency=currency,
        status=InvoiceStatus.OPEN,
        issued_at=dt.datetime.now(dt.UTC),
        lines=tuple(items),
        tax=tax,
        total=subtotal + tax,
    )


def erp_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def answered(drop: Path) -> tuple[int, int]:
    """(references acknowledged with a document, error files) in ``drop``."""
    posted = 0
    for ack in (drop / "ack").glob("*.ack.csv"):
        with ack.open(encoding="utf-8", newline="") as handle:
            posted += sum(1 for row in csv.DictReader(handle) if row.get("document"))
    return posted, len(list((drop / "err").glob("*.err.csv")))


async def end_to_end(args: argparse.Namespace, folder: Path, run: str) -> dict[str, Any]:
    sandbox = LegacyErpSandbox(folder / "erp", batch_seconds=args.batch_seconds)
    endpoint = sandbox.start()
    try:
        config = LegacyErpConfig.for_sandbox(
            endpoint.base_url,
            endpoint.username,
            endpoint.password,
            endpoint.drop_folder,
            ack_wait_seconds=600.0,
        )
        async with LegacyErp(config) as erp:
            parties = [
                await erp.upsert_customer(
                    customer(run, i), legal_entity=entity_of(i), idempotency_key=f"{run}-{i}"
                )
                for i in range(args.customers)
            ]
            invoices = [
                invoice(run, n, parties[n % len(parties)], entity_of(n % len(parties)), args.lines)
                for n in range(args.invoices)
            ]
            gate = asyncio.Semaphore(args.concurrency)
            latencies: list[float] = []

            async def post(index: int, bill: Invoice) -> None:
                async with gate:
                    began = time.monotonic()
                    await erp.post_invoice(
                        bill,
                        legal_entity=entity_of(index % len(parties)),
                        idempotency_key=str(bill.number),
                    )
                    latencies.append(time.monotonic() - began)

            cpu_erp, cpu_hub = erp_cpu(endpoint.pid), time.process_time()
            started = time.monotonic()
            await asyncio.gather(*(post(i, bill) for i, bill in enumerate(invoices)))
            elapsed = time.monotonic() - started
            cpu_erp, cpu_hub = erp_cpu(endpoint.pid) - cpu_erp, time.process_time() - cpu_hub
    finally:
        sandbox.stop()
    drop = Path(endpoint.drop_folder)
    posted, errors = answered(drop)
    if posted != args.invoices or errors:
        raise SystemExit(f"end to end: {posted} of {args.invoices} posted, {errors} error files")
    latencies.sort()
    return {
        "seconds": round(elapsed, 3),
        "invoices_per_second": round(args.invoices / elapsed, 1),
        "cpu_seconds_erp": round(cpu_erp, 2),
        "cpu_seconds_hub": round(cpu_hub, 2),
        "cpu_ms_per_invoice": round(1000 * (cpu_erp + cpu_hub) / args.invoices, 2),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_max_s": round(latencies[-1], 3),
        "drop": str(drop),
        "parties": parties,
    }


def raw(args: argparse.Namespace, folder: Path, run: str, archive: Path) -> dict[str, Any]:
    """The same files through ``run_batch`` on fresh books, in this process."""
    books = Books(folder / "raw")
    try:
        numbers = [
            books.upsert_customer(
                CustomerData(
                    reference=f"bench-{run}-{i}",
                    entity=entity_of(i),
                    name=customer(run, i).name,
                    country=ENTITIES[entity_of(i)][2].country,
                )
            )
            for i in range(args.customers)
        ]
        drop = folder / "raw" / "drop"
        prepare(drop)
        for source in sorted(archive.glob("*.csv")):
            shutil.copy(source, drop / "in" / source.name)
        cpu, started = time.process_time(), time.monotonic()
        files = run_batch(books, drop)
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    finally:
        books.close()
    posted, errors = answered(drop)
    if posted != args.invoices or errors or files != args.invoices:
        raise SystemExit(f"raw: {posted} of {args.invoices} posted, {errors} error files")
    return {
        "seconds": round(elapsed, 3),
        "invoices_per_second": round(args.invoices / elapsed, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_invoice": round(1000 * cpu / args.invoices, 2),
        "customer_numbers": numbers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="300 invoices x 3 lines")
    args = parser.parse_args()
    if args.quick:
        args.invoices, args.lines = 300, 3
    run = os.urandom(3).hex()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="q2c-bench-legacy-") as scratch:
        folder = Path(scratch)
        e2e = asyncio.run(end_to_end(args, folder, run))
        batch = raw(args, folder, run, Path(e2e.pop("drop")) / "archive")
    if batch.pop("customer_numbers") != e2e.pop("parties"):
        raise SystemExit("raw: the fresh books numbered the customers differently")
    result = {
        "benchmark": "legacy_erp_files",
        "invoices": args.invoices,
        "lines": args.lines,
        "customers": args.customers,
        "batch_seconds": args.batch_seconds,
        "concurrency": args.concurrency,
        "end_to_end": e2e,
        "raw_batch": batch,
        "end_to_end_share_of_raw": round(
            e2e["invoices_per_second"] / batch["invoices_per_second"], 3
        ),
        "load_average": [round(x, 2) for x in (load[0], os.getloadavg()[0])],
        "cpus": os.cpu_count(),
    }
    print(
        f"{args.invoices} invoices x {args.lines} lines, batch every {args.batch_seconds} s, "
        f"{args.concurrency} in flight\n"
        f"  end to end: {e2e['invoices_per_second']:>8} invoices/s  ({e2e['seconds']} s, "
        f"CPU {e2e['cpu_seconds_erp']} s ERP + {e2e['cpu_seconds_hub']} s hub, "
        f"p50 {e2e['latency_p50_s']} s)\n"
        f"  raw batch:  {batch['invoices_per_second']:>8} invoices/s  ({batch['seconds']} s, "
        f"CPU {batch['cpu_seconds']} s)\n"
        f"  load average {load[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
