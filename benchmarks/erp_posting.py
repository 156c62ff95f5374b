"""Posting invoices in Tryton: one per call against several per call, raw and through the hub.

Against a sandbox Tryton (SQLite, or ``--backend postgresql``) with fresh customers of Q2C Inc.:
- **raw**: Tryton's own rate. Draft values are built by the connector beforehand (not timed);
  timed are ``account.invoice.create`` and ``post`` with 1 record per call, then with ``--batch``
  records per call (the same calls the batched ERP path makes), each on its own invoices.
- **hub**: the ``TrytonErp`` connector end to end (reference look-up, create, total check,
  post, read back): ``post_invoice`` one at a time, then ``post_invoices`` in batches of
  ``--batch``; with ``--writers K`` (PostgreSQL), K batches are in flight at once.
Every phase checks each invoice came back posted with its own total.

    python benchmarks/erp_posting.py --quick                   # SQLite, ~1 min
    python benchmarks/erp_posting.py --invoices 400 --batch 8
    python benchmarks/erp_posting.py --quick --backend postgresql --writers 4
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

SRC = Path(__file__).parents[1] / "src"
sys.path.insert(0, str(SRC))

from quote2cash.canonical import (  # noqa: E402
    Address,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    Ref,
)
from quote2cash.connectors.roles import InvoicePosting  # noqa: E402
from quote2cash.connectors.tryton import TrytonErp  # noqa: E402
from quote2cash.connectors.tryton.invoices import POSTING_WARNINGS  # noqa: E402
from quote2cash.sandbox.systems import tryton_config  # noqa: E402
from quote2cash.sandbox.tryton import ITEM_MASTER, TrytonSandbox  # noqa: E402

ENTITY = "US"
ADDRESS = Address(line1="500 Congress Ave", city="Austin", postal_code="78701", country="US")


def invoice(run: str, number: int, party: str) -> Invoice:
    """Two untaxed lines of a year's service: 3 x 33.33 and a -12.34 proration (87.65 USD)."""
    today = dt.datetime.now(dt.UTC).date()
    start = dt.date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    end = dt.date(start.year + 1, start.month, 1)
    product = Ref.external("erp", ITEM_MASTER[0].code)
    lines = (
        InvoiceLine(
            description="Platform seats",
            product=product,
            quantity=Decimal(3),
            unit_amount=Decimal("33.33"),
            amount=Money("99.99", "USD"),
            service_start=start,
            service_end=end,
        ),
        InvoiceLine(
            description="Unused time",
            product=product,
            quantity=Decimal(1),
            unit_amount=Decimal("-12.34"),
            amount=Money("-12.34", "USD"),
            service_start=start + dt.timedelta(days=180),
            service_end=end,
            proration=True,
        ),
    )
    return Invoice(
        number=f"BENCH-{run}-{number}",
        customer=Ref(global_id=f"bench-{run}-{number % 8}", external_ids={"erp": party}),
        currency="USD",
        status=InvoiceStatus.OPEN,
        issued_at=dt.datetime.now(dt.UTC),
        lines=lines,
        tax=Money.zero("USD"),
        total=Money("87.65", "USD"),
    )


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def rate(count: int, seconds: float) -> dict[str, Any]:
    return {
        "invoices": count,
        "seconds": round(seconds, 2),
        "invoices_per_s": round(count / seconds, 2),
        "ms_per_invoice": round(1000 * seconds / count, 1),
    }


async def raw(erp: TrytonErp, invoices: Sequence[Invoice], per_call: int) -> dict[str, Any]:
    """Tryton's own rate: ``create`` then ``post``, ``per_call`` invoices per call (with the
    per-invoice warnings acknowledged ahead, as the connector does once it has met them)."""
    entity = erp._entity(ENTITY, "bench")
    client = await erp._erp()
    ctx = await erp._context(entity)
    model = client.model("account.invoice")
    values = [
        await erp._invoice_values(
            inv,
            entity,
            int(inv.customer.external_ids["erp"]),
            str(inv.number),
            f"raw-{inv.number}",
            "bench",
        )
        for inv in invoices
    ]
    started = time.perf_counter()
    ids: list[int] = []
    for chunk in chunks(values, per_call):
        created = await model.create(chunk, context=ctx)
        # the warnings posting accepts, acknowledged ahead as the connector does (else each
        # invoice's post fails on its own warning once and runs again)
        await erp._acknowledge_expected(client, created)
        await model.execute_button("post", created, context=ctx, allow_warnings=POSTING_WARNINGS)
        ids.extend(created)
    seconds = time.perf_counter() - started
    rows = await model.read(ids, ["state", "total_amount"], context=ctx)
    bad = [
        r for r in rows if r["state"] != "posted" or Decimal(r["total_amount"]) != Decimal("87.65")
    ]
    if bad or len(rows) != len(invoices):
        raise SystemExit(f"raw ({per_call} per call): {len(bad)} invoices not posted right")
    return {"per_call": per_call, **rate(len(invoices), seconds)}


async def hub(
    erp: TrytonErp, invoices: Sequence[Invoice], batch: int, writers: int
) -> dict[str, Any]:
    """The connector: ``post_invoice`` one by one (batch 1) or ``post_invoices`` in batches,
    ``writers`` batches in flight at once."""
    queue: asyncio.Queue[Sequence[Invoice]] = asyncio.Queue()
    for chunk in chunks(invoices, batch):
        queue.put_nowait(chunk)
    posted: list[Any] = []

    async def writer() -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            if batch == 1:
                [one] = chunk
                posted.append(
                    await erp.post_invoice(
                        one, legal_entity=ENTITY, idempotency_key=str(one.number)
                    )
                )
                continue
            results = await erp.post_invoices(
                [InvoicePosting(inv, ENTITY, str(inv.number)) for inv in chunk]
            )
            for result in results:
                if result.error is not None:
                    raise SystemExit(f"hub: {result.error}")
                posted.append(result.posted)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    seconds = time.perf_counter() - started
    if len({p.erp_id for p in posted}) != len(invoices) or any(
        p.total != Money("87.65", "USD") for p in posted
    ):
        raise SystemExit(f"hub (batch {batch}): invoices missing, doubled or wrong")
    return {"batch": batch, "writers": writers, **rate(len(invoices), seconds)}


async def measure(args: argparse.Namespace, endpoint: Any) -> dict[str, Any]:
    run = os.urandom(3).hex()
    writers = args.writers
    config = tryton_config(endpoint, max_concurrency=max(writers, 1), timeout=300.0)
    async with TrytonErp(config) as erp:
        parties = [
            await erp.upsert_customer(
                Customer(global_id=f"bench-{run}-{n}", name=f"Bench {run} {n}", address=ADDRESS),
                legal_entity=ENTITY,
                idempotency_key=f"bench-{run}-{n}",
            )
            for n in range(8)
        ]
        made = iter(range(10**9))

        def fresh(count: int) -> list[Invoice]:
            return [invoice(run, n, parties[n % 8]) for n in (next(made) for _ in range(count))]

        n = args.invoices
        await raw(erp, fresh(args.batch), args.batch)  # warm-up: caches, first sequence numbers
        raw_one = await raw(erp, fresh(n), 1)
        raw_batch = await raw(erp, fresh(n), args.batch)
        hub_one = await hub(erp, fresh(n), 1, 1)
        hub_batch = await hub(erp, fresh(n), args.batch, 1)
        phases = {"raw_one": raw_one, "raw_batch": raw_batch, "hub_one": hub_one}
        phases["hub_batch"] = hub_batch
        if writers > 1:
            phases["hub_batch_writers"] = await hub(erp, fresh(n), args.batch, writers)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 invoices per phase")
    parser.add_argument("--invoices", type=int, default=200, help="invoices per phase")
    parser.add_argument("--batch", type=int, default=8, help="invoices per call when batched")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--writers", type=int, default=1, help="batches in flight at once (PostgreSQL)"
    )
    args = parser.parse_args()
    if args.quick:
        args.invoices = 16
    if args.backend == "sqlite" and args.writers > 1:
        raise SystemExit(
            "SQLite takes one writer at a time: --writers > 1 needs --backend postgresql"
        )
    load = os.getloadavg()[0]
    sandbox = TrytonSandbox(backend=args.backend)
    endpoint = sandbox.start()
    try:
        phases = asyncio.run(measure(args, endpoint))
    finally:
        sandbox.stop()
    result: dict[str, Any] = {
        "benchmark": "erp_posting",
        "backend": args.backend,
        "batch": args.batch,
        **phases,
        "erp_raw_posts_per_s": phases["raw_one"]["invoices_per_s"],
        "raw_batch_gain": round(
            phases["raw_batch"]["invoices_per_s"] / phases["raw_one"]["invoices_per_s"], 2
        ),
        "hub_batch_gain": round(
            phases["hub_batch"]["invoices_per_s"] / phases["hub_one"]["invoices_per_s"], 2
        ),
        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }
    for name, phase in phases.items():
        print(
            f"  {name:<18} {phase['invoices_per_s']:>7} invoices/s  "
            f"{phase['ms_per_invoice']:>7} ms/invoice  ({phase['seconds']} s)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
