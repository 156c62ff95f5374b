"""Console and invoice-status load: the trace page and ``GET /v1/invoices/{id}`` under N
concurrent clients, against a real ``q2c serve`` subprocess, on SQLite and on PostgreSQL.

The store holds D deals the engine really processed (events logged, handlers run by the worker,
steps and audit entries recorded, cross-references linked). The baseline, measured in the same
run against the same server, is ``GET /health`` (one ``SELECT 1``): each figure is also given as
a ratio of the baseline's requests/s. Prints a table; the last line is one JSON object.

    python benchmarks/console_load.py            # 5,000 deals, 2,000 requests per route
    python benchmarks/console_load.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from _common import pg_database, start_serve, stop_serve
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.identity import Operator
from quote2cash.identity.accounts import add_operator, create_first_admin, set_password
from quote2cash.identity.tokens import issue_token
from quote2cash.masterdata.xref import Kind, XrefStore

SRC = Path(__file__).parents[1] / "src"
PASSWORD = "benchmark pass phrase 1"
APPEND_BATCH = 500


def deal_events(i: int) -> list[Event]:
    """A closed-won deal and its first invoice, on the deal's contract."""
    subject = f"contract:C-BENCH-{i:06d}"
    won = new_event(
        "crm.opportunity.closed_won",
        subject,
        {"opportunity_id": f"006B{i:014d}", "account_id": f"001B{i:014d}"},
        source="crm",
    )
    invoice = {
        "object": "invoice",
        "id": f"in_bench{i:08d}",
        "number": f"BENCH-{i:06d}",
        "currency": "usd",
        "total": 14700,
        "amount_paid": 0,
        "amount_remaining": 14700,
        "status": "open",
        "due_date": int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()),
        "status_transitions": {},
    }
    finalized = new_event(
        "billing.invoice.finalized",
        subject,
        {"object": invoice},
        source="billing",
        correlation_id=won.correlation_id,
    )
    return [won, finalized]


def registry(xref: XrefStore) -> Registry:
    """Handlers that record the steps the real flows record (without calling any system)."""
    reg = Registry()

    async def closed_won(ctx: HandlerContext, event: Event) -> None:
        n = event.subject.rsplit("-", 1)[1]
        await ctx.step("crm.get_deal", lambda _k: dict(event.data))
        await ctx.step("billing.upsert_customer", lambda _k: f"cus_bench{n}")
        await ctx.step(
            "billing.create_subscription",
            lambda _k: {"id": f"sub_bench{n}"},
        )
        await ctx.step("erp.book_order", lambda _k: n)
        customer = xref.ensure_global_id(Kind.CUSTOMER, "crm", str(event.data["account_id"]))
        xref.link(customer, "billing", f"cus_bench{n}")

    async def finalized(ctx: HandlerContext, event: Event) -> None:
        obj = event.data["object"]
        posted = await ctx.step(
            "erp.post_invoice",
            lambda _k: {"erp_id": obj["number"][6:]},
        )
        invoice = xref.ensure_global_id(Kind.INVOICE, "billing", obj["id"])
        xref.link(invoice, "erp", f"erp-{posted['erp_id']}")
        await ctx.step("crm.publish_invoice", lambda _k: [f"a01B{obj['number']}"])

    reg.add("crm.opportunity.closed_won", closed_won)
    reg.add("billing.invoice.finalized", finalized)
    return reg


async def populate(url: str, deals: int) -> tuple[list[str], list[str], str]:
    """The deals (through the worker), a viewer account and its API token."""
    runtime = Runtime.open(url, sqlite_synchronous="NORMAL")
    try:
        correlations, invoices = [], []
        worker = Worker(runtime, registry(XrefStore(runtime.engine, runtime.clock)))
        for start in range(0, deals, APPEND_BATCH):
            batch = [
                e for i in range(start, min(deals, start + APPEND_BATCH)) for e in deal_events(i)
            ]
            runtime.log.append_many(batch)
            correlations += [e.correlation_id for e in batch[::2]]
            invoices += [e.data["object"]["id"] for e in batch[1::2]]
            await worker.drain()
        create_first_admin(runtime, "admin")
        admin = Operator("admin", frozenset({"admin"}), via="password")
        one_time = add_operator(runtime, "viewer", ["viewer"], by=admin)
        set_password(runtime, "viewer", one_time, PASSWORD)
        token = issue_token(
            runtime,
            "viewer",
            "bench",
            ["viewer"],
            by=Operator("viewer", frozenset({"viewer"}), via="password"),
            ttl=timedelta(hours=2),
        )
        return correlations, invoices, token
    finally:
        runtime.close()


async def sign_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/console/sign-in") as answer:
        token = re.search(r'name="signin_csrf" value="([^"]+)"', await answer.text())
    assert token is not None
    form = {"name": "viewer", "password": PASSWORD, "signin_csrf": token.group(1)}
    async with http.post(f"{base}/console/sign-in", data=form) as answer:
        assert answer.status == 200, answer.status


async def load(
    request: Callable[[int], Awaitable[int]], total: int, concurrency: int
) -> dict[str, float]:
    """``total`` requests from ``concurrency`` clients; latencies in ms, requests/s."""
    latencies: list[float] = []
    failures = 0
    counter = iter(range(total))

    async def client() -> None:
        nonlocal failures
        for n in counter:
            started = time.perf_counter()
            status = await request(n)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += status != 200

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "p50_ms": round(cuts[49], 2),
        "p99_ms": round(cuts[98], 2),
        "rps": round(total / elapsed, 1),
        "non_200": failures,
    }


async def measure(
    url: str, deals: int, total: int, concurrency: int, folder: Path
) -> dict[str, Any]:
    t0 = time.perf_counter()
    correlations, invoices, token = await populate(url, deals)
    populate_s = time.perf_counter() - t0
    process, base = start_serve(url, folder, console=True)
    rng = random.Random(11)
    try:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:
            await sign_in(http, base)
            bearer = {"Authorization": f"Bearer {token}"}

            async def health(_n: int) -> int:
                async with http.get(f"{base}/health") as answer:
                    await answer.read()
                    return answer.status

            async def trace(_n: int) -> int:
                cid = rng.choice(correlations)
                async with http.get(f"{base}/console/trace/{cid}") as answer:
                    await answer.read()
                    return answer.status

            async def invoice(_n: int) -> int:
                ident = rng.choice(invoices)
                async with http.get(f"{base}/v1/invoices/{ident}", headers=bearer) as answer:
                    await answer.read()
                    return answer.status

            await load(trace, min(50, total), concurrency)  # warm-up
            baseline = await load(health, total, concurrency)
            figures = {
                "trace_page": await load(trace, total, concurrency),
                "invoice_status": await load(invoice, total, concurrency),
            }
    finally:
        stop_serve(process)
    for figure in figures.values():
        figure["vs_health_rps"] = round(figure["rps"] / baseline["rps"], 3)
    return {"deals": deals, "populate_s": round(populate_s, 1), "health": baseline, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small store, few requests")
    parser.add_argument("--deals", type=int)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    deals = args.deals or (200 if args.quick else 5000)
    total = args.requests or (300 if args.quick else 2000)
    results: dict[str, Any] = {"concurrency": args.concurrency, "requests": total}
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if backend == "sqlite":
                results[backend] = asyncio.run(
                    measure(
                        f"sqlite:///{folder / 'hub.sqlite'}", deals, total, args.concurrency, folder
                    )
                )
            else:
                url, drop = pg_database()
                try:
                    results[backend] = asyncio.run(
                        measure(url, deals, total, args.concurrency, folder)
                    )
                finally:
                    drop()
        r = results[backend]
        print(f"{backend}: {deals} deals (populated through the worker in {r['populate_s']} s)")
        print(f"  {'route':<16}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'vs /health':>12}")
        for route in ("health", "trace_page", "invoice_status"):
            f = r[route]
            ratio = f.get("vs_health_rps", 1.0)
            print(f"  {route:<16}{f['p50_ms']:>9}{f['p99_ms']:>9}{f['rps']:>9}{ratio:>12}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
