"""Usage posting: aggregate versions posted to billing per second through the hub's posting flow
(recorded steps, the postings record, billing's gate), against the same meter events sent
straight through the Stripe connector, in the same run.

Hub: S metered subscriptions on our Stripe emulator (its own process), a SQLite store and one
worker;
R rounds, each giving every subscription a new version of its period's aggregate and logging one
``usage.batch.accepted`` event per subscription; the worker posts each version's delta (one
``billing.get_subscription`` step per event, one ``billing.post_usage`` step per version).
Direct: the same number of meter events through ``StripeBilling.post_usage`` with no engine
(no steps, no store). Both check billing counted exactly what was sent.

    python benchmarks/usage_posting.py            # 400 subscriptions x 4 versions
    python benchmarks/usage_posting.py --quick    # 100 x 3, well under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
sys.path.insert(0, str(SRC))

import stripe  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from quote2cash.connectors.registry import Systems  # noqa: E402
from quote2cash.connectors.roles import UsagePosting  # noqa: E402
from quote2cash.connectors.stripe import StripeBilling  # noqa: E402
from quote2cash.defaults import packaged_config_dir  # noqa: E402
from quote2cash.engine.events import new_event  # noqa: E402
from quote2cash.engine.runtime import Runtime  # noqa: E402
from quote2cash.engine.systems import SystemLimits  # noqa: E402
from quote2cash.engine.worker import Worker  # noqa: E402
from quote2cash.flows import build_registry  # noqa: E402
from quote2cash.flows.deps import FlowDeps  # noqa: E402
from quote2cash.flows.usage_posting import BATCH_ACCEPTED, counted_at  # noqa: E402
from quote2cash.masterdata.xref import Kind  # noqa: E402
from quote2cash.store.schema import steps  # noqa: E402
from quote2cash.usage.records import AcceptedRecord, UsageAggregate  # noqa: E402

METER = "bench_calls"
CONCURRENCY = 8
"""Billing's concurrency budget (calls in flight), as a deployment sets it in its limits."""


@dataclass
class RoundsLedger:
    """The benchmark's stand-in for intake's ledger: one aggregate per subscription, a new
    version (10 more calls, cumulative) each round, frozen when handed over."""

    aggregates: dict[str, UsageAggregate] = field(default_factory=dict)
    handed: dict[str, UsageAggregate] = field(default_factory=dict)

    def next_round(self, periods: dict[str, tuple[datetime, datetime]]) -> None:
        for sub, (start, end) in periods.items():
            held = self.aggregates.get(sub)
            version = 1 if held is None else held.version + 1
            self.aggregates[sub] = UsageAggregate(
                aggregate_id=f"bench-{sub}-v{version}",
                subscription=sub,
                meter=METER,
                period_start=start,
                period_end=end,
                quantity=Decimal(10 * version),
                unit="call",
                record_count=version,
                batch_ids=tuple(f"b{n}" for n in range(1, version + 1)),
                version=version,
            )

    def records_of(self, aggregate_id: str) -> list[AcceptedRecord]:
        return []

    def pending_aggregates(self) -> Sequence[UsageAggregate]:
        return [a for a in self.aggregates.values() if a.aggregate_id not in self.handed]

    def hand_over(self, aggregate_ids: Sequence[str], at: datetime) -> Sequence[UsageAggregate]:
        known = {a.aggregate_id: a for a in self.aggregates.values()} | self.handed
        for aggregate_id in aggregate_ids:
            if aggregate_id in known:
                self.handed[aggregate_id] = known[aggregate_id]
        return [known[i] for i in aggregate_ids if i in known]

    def ingested_total(self, subscription: str, meter: str, period_start: datetime) -> Decimal:
        held = self.aggregates.get(subscription)
        return held.quantity if held else Decimal(0)


def subscriptions(sdk: stripe.StripeClient, count: int) -> dict[str, tuple[datetime, datetime]]:
    """``count`` subscriptions to one metered price; their current billing periods."""
    meter = sdk.v1.billing.meters.create(
        params={
            "display_name": METER,
            "event_name": METER,
            "default_aggregation": {"formula": "sum"},
        }
    )
    product = sdk.v1.products.create(params={"name": METER})
    price = sdk.v1.prices.create(
        params={
            "product": product.id,
            "currency": "eur",
            "unit_amount_decimal": "0.5",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    periods: dict[str, tuple[datetime, datetime]] = {}
    for n in range(count):
        customer = sdk.v1.customers.create(
            params={
                "name": f"Bench {n}",
                "payment_method": "pm_card_visa",
                "invoice_settings": {"default_payment_method": "pm_card_visa"},
            }
        )
        sub = sdk.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": price.id}]}
        )
        item = sub["items"].data[0]
        periods[sub.id] = (
            datetime.fromtimestamp(int(item["current_period_start"]), UTC),
            datetime.fromtimestamp(int(item["current_period_end"]), UTC),
        )
    return periods


async def through_the_hub(
    url: str, folder: str, periods: dict[str, tuple[datetime, datetime]], rounds: int
) -> dict[str, float]:
    runtime = Runtime.open(
        f"sqlite:///{folder}/hub.sqlite",
        sqlite_synchronous="NORMAL",
        limits={"billing": SystemLimits(max_concurrency=CONCURRENCY)},
    )
    billing = StripeBilling.for_sandbox(url)
    ledger = RoundsLedger()
    try:
        async with billing:
            deps = FlowDeps.build(runtime, Systems(billing=billing), packaged_config_dir())
            deps.usage_ledger = ledger
            for sub in periods:  # the hub onboarded these subscriptions: it knows their ids
                deps.xref.ensure_global_id(Kind.SUBSCRIPTION, "billing", sub, actor="bench")
            worker = Worker(runtime, build_registry(deps), commit_interval=0.01)
            seconds = cpu = 0.0
            for r in range(rounds):
                ledger.next_round(periods)
                batch = [
                    new_event(
                        BATCH_ACCEPTED,
                        f"contract:{sub}",
                        {"subscription": sub, "aggregates": [ledger.aggregates[sub].aggregate_id]},
                    )
                    for sub in periods
                ]
                runtime.log.append_many(batch)
                started, cpu_started = time.perf_counter(), time.process_time()
                await worker.drain()
                seconds += time.perf_counter() - started
                cpu += time.process_time() - cpu_started
                print(f"  hub round {r + 1}: {len(periods)} versions", file=sys.stderr)
            with runtime.engine.connect() as conn:
                recorded = conn.execute(select(func.count()).select_from(steps)).scalar_one()
            posted = list(deps.usage_postings.all())
            assert len(posted) == len(periods) * rounds, len(posted)
            for sub, (start, end) in list(periods.items())[:20]:
                counted = await billing.usage_counted(sub, METER, start, end)
                assert counted == 10 * rounds, (sub, counted)
    finally:
        runtime.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "postings": float(len(periods) * rounds),
        "steps": float(recorded),
    }


async def direct(
    url: str, periods: dict[str, tuple[datetime, datetime]], rounds: int
) -> dict[str, float]:
    billing = StripeBilling.for_sandbox(url)
    async with billing:
        for sub in list(periods)[:1]:  # warm the connector's meter cache like the hub's first call
            await billing.usage_counted(sub, METER, *periods[sub])
        started, cpu_started = time.perf_counter(), time.process_time()
        for r in range(rounds):
            for sub, (start, end) in periods.items():
                at = counted_at(datetime.now(UTC), start, end)
                posting = UsagePosting(sub, METER, Decimal(10), at, f"direct-{sub}:v{r + 1}")
                await billing.post_usage([posting], idempotency_key=f"direct-{sub}-{r}")
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        for sub, (start, end) in list(periods.items())[:20]:
            assert await billing.usage_counted(sub, METER, start, end) == 20 * rounds
    return {"seconds": seconds, "cpu_seconds": cpu, "postings": float(len(periods) * rounds)}


def stripe_emulator_process() -> tuple[str, subprocess.Popen[bytes]]:
    """Our Stripe emulator as its own process (as the sandbox runs it), and its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "quote2cash.sandbox.stripe", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"http://127.0.0.1:{port}", proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the Stripe emulator did not start")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="100 subscriptions x 3 versions")
    parser.add_argument("--subscriptions", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    count, rounds = (100, 3) if args.quick else (args.subscriptions, args.rounds)
    url, emulator = stripe_emulator_process()
    try:
        sdk = stripe.StripeClient(
            api_key="sk_test_quote2cash_sandbox", base_addresses={"api": url}, max_network_retries=0
        )
        periods = subscriptions(sdk, count)
        emulator_cpu = process_cpu(emulator.pid)
        with tempfile.TemporaryDirectory(prefix="q2c-usage-posting-") as folder:
            hub = asyncio.run(through_the_hub(url, folder, periods, rounds))
        hub_emulator_cpu = process_cpu(emulator.pid) - emulator_cpu
        straight = asyncio.run(direct(url, periods, rounds))
        direct_emulator_cpu = process_cpu(emulator.pid) - emulator_cpu - hub_emulator_cpu
    finally:
        emulator.terminate()
        emulator.wait(10)
    result = {
        "benchmark": "usage_posting",
        "subscriptions": count,
        "versions_each": rounds,
        "hub_postings_per_s": round(hub["postings"] / hub["seconds"], 1),
        "hub_seconds": round(hub["seconds"], 2),
        "hub_cpu_ms_per_posting": round(1000 * hub["cpu_seconds"] / hub["postings"], 2),
        "direct_events_per_s": round(straight["postings"] / straight["seconds"], 1),
        "direct_cpu_ms_per_event": round(1000 * straight["cpu_seconds"] / straight["postings"], 2),
        "hub_over_direct": round(
            (hub["postings"] / hub["seconds"]) / (straight["postings"] / straight["seconds"]), 3
        ),
        "recorded_steps_per_posting": round(hub["steps"] / hub["postings"], 2),
        "emulator_cpu_ms_per_posting": round(1000 * hub_emulator_cpu / hub["postings"], 2),
        "emulator_cpu_ms_per_direct_event": round(
            1000 * direct_emulator_cpu / straight["postings"], 2
        ),
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
