"""Many ``q2c serve`` processes on one PostgreSQL store: they answer the same (the reconciliation
report and invoice status live in the store), the scheduled reconciliation runs once per interval
across all of them (the ``serve.schedule`` lease), and killing the process that runs it hands the
schedule to another. ``q2c serve --processes 2`` serves one port from two processes, starts a
killed one again, stops them all on SIGTERM, and every one of them verifies Stripe webhooks
with the one secret the parent registered on the sandbox.

Each process is the product as an operator runs it (``q2c serve`` from this checkout); no
system is configured, so each scheduled reconciliation fails fast and says so in the log, which
is what these tests count: a run is a run, whatever its outcome."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from quote2cash.engine.events import new_event
from quote2cash.engine.hub_state import RECONCILIATION, keep_state
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.identity.accounts import create_first_admin
from quote2cash.identity.tokens import issue_token
from quote2cash.readmodels.invoice_status import rebuild
from quote2cash.reconcile.model import Drift, DriftKind, Repair, Report
from quote2cash.store.schema import events

from .conftest import STRIPE_KEY, StripeSandbox
from .serve_process import Serve, start_serve, stop
from .serve_process import serve_env as base_env

INTERVAL = 2.0
"""The reconciliation interval the processes run with (Q2C_RECONCILE_INTERVAL_SECONDS)."""
RUNS = re.compile(r"reconciliation (failed|: )")


def runs(serve: Serve) -> list[datetime]:
    """When each scheduled reconciliation of this process ended."""
    return [datetime.fromisoformat(x["time"]) for x in serve.lines() if RUNS.search(x["message"])]


def leads(serve: Serve) -> bool:
    return any("runs the scheduled jobs" in m for m in serve.messages())


def serve_env() -> dict[str, str]:
    return base_env(Q2C_RECONCILE_INTERVAL_SECONDS=str(INTERVAL), Q2C_SERVE_LEASE_SECONDS="30")


def start(url: str, folder: Path, name: str, *extra: str) -> Serve:
    return start_serve(url, folder, "--no-workers", *extra, name=name, env=serve_env())


@dataclass
class Store:
    url: str
    token: str


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    """A PostgreSQL store with one finalized invoice in its read model, a kept reconciliation
    report and a viewer's token."""
    runtime = Runtime.open(pg_url)
    try:
        data = {
            "object": {
                "object": "invoice",
                "id": "in_multi1",
                "number": "MULTI-0001",
                "currency": "eur",
                "total": 14700,
                "amount_paid": 0,
                "amount_remaining": 14700,
                "status": "open",
                "due_date": int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()),
                "lines": {"data": [{"description": "Platform seat", "amount": 14700}]},
            }
        }
        event = new_event("billing.invoice.finalized", "contract:MULTI-1", data, source="billing")
        runtime.log.append(event)
        with runtime.engine.begin() as conn:
            rebuild(conn)
        at = datetime(2026, 12, 6, 4, tzinfo=UTC)
        drift = Drift(
            DriftKind.AMOUNT,
            "invoice",
            "MULTI-0001",
            {"billing": ("in_multi1",), "erp": ("12",)},
            "total 147.00 EUR in billing, 148.00 EUR in erp",
            Repair("correct ERP document 12 to billing's total"),
            {"billing": "147.00", "erp": "148.00"},
        )
        report = Report(at, at, None, {"billing": {"invoice": 1}}, (drift,))
        keep_state(runtime.engine, RECONCILIATION, report.to_json(), at=at, by="test")
        create_first_admin(runtime, "admin")
        token = issue_token(
            runtime,
            "admin",
            "multi",
            ["viewer"],
            by=Operator("admin", frozenset({"admin"}), via="password"),
            ttl=timedelta(hours=1),
        )
    finally:
        runtime.close()
    yield Store(pg_url, token)


async def answers(url: str, token: str, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}{path}", headers=headers) as answer,
    ):
        return answer.status, await answer.json()


def gaps(times: list[datetime]) -> list[float]:
    ordered = sorted(times)
    return [(b - a).total_seconds() for a, b in itertools.pairwise(ordered)]


async def test_two_serve_processes_answer_alike_and_share_one_schedule(
    store: Store, tmp_path: Path
) -> None:
    first = start(store.url, tmp_path, "first")
    second = start(store.url, tmp_path, "second")
    try:
        for path in ("/v1/reconciliation", "/v1/invoices/in_multi1", "/v1/invoices/MULTI-0001"):
            one = await answers(first.url, store.token, path)
            two = await answers(second.url, store.token, path)
            assert one[0] == 200 and one == two, (path, one, two)
        assert one[1]["invoice"]["total"] == {"amount": "147.00", "currency": "EUR"}
        status, report = await answers(second.url, store.token, "/v1/reconciliation")
        assert report["report"]["drifts"][0]["values"] == {"billing": "147.00", "erp": "148.00"}

        await asyncio.sleep(4 * INTERVAL + 1)
        leaders = [s for s in (first, second) if leads(s)]
        assert len(leaders) == 1, [s.log.read_text()[-1500:] for s in (first, second)]
        leader = leaders[0]
        other = second if leader is first else first
        assert runs(other) == []  # the schedule ran in the leader only
        ran = runs(leader)
        assert len(ran) >= 3, ran  # and never closer than the interval: once per interval
        assert min(gaps(ran)) >= INTERVAL * 0.9, gaps(ran)

        leader.process.kill()  # no clean stop: its lease is still held in the store
        leader.process.wait()
        killed_at = datetime.now(UTC)
        for _ in range(75):
            if leads(other) and runs(other):
                break
            await asyncio.sleep(0.2)
        assert leads(other), other.log.read_text()[-2000:]
        taken = runs(other)
        assert taken, other.log.read_text()[-2000:]
        # handed over within seconds (well inside the 30 s lease: the dead pid is seen), and
        # the next run keeps the interval from the dead leader's last one
        assert (taken[0] - killed_at).total_seconds() < INTERVAL + 5
        assert min(gaps([*ran, *taken])) >= INTERVAL * 0.9, gaps([*ran, *taken])
        status, after = await answers(other.url, store.token, "/v1/invoices/in_multi1")
        assert status == 200 and after == one[1]
    finally:
        stop(first)
        stop(second)


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(x) for x in text)
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def serving_children(pid: int) -> set[int]:
    """The parent's serve processes (not multiprocessing's resource tracker)."""
    return {
        c
        for c in children(pid)
        if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")
    }


async def test_processes_option_serves_one_port_from_n_processes(
    store: Store, tmp_path: Path
) -> None:
    parent = start(store.url, tmp_path, "parent", "--processes", "2")
    try:
        assert parent.url.startswith("http://127.0.0.1:")
        served = serving_children(parent.process.pid)
        assert len(served) == 2
        for _ in range(20):  # the kernel spreads new connections over both
            status, body = await answers(parent.url, store.token, "/v1/invoices/MULTI-0001")
            assert status == 200 and body["invoice"]["number"] == "MULTI-0001"
        victim = min(served)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = serving_children(parent.process.pid)
            if len(now) == 2 and victim not in now:
                break
            await asyncio.sleep(0.2)
        now = serving_children(parent.process.pid)
        assert len(now) == 2 and victim not in now, parent.log.read_text()[-2000:]
        status, _ = await answers(parent.url, store.token, "/v1/reconciliation")
        assert status == 200
    finally:
        stop(parent)
    assert parent.process.returncode == 0
    assert not alive(served | now)  # every serve process ended with the parent


async def test_every_process_verifies_the_one_sandbox_webhook_secret(
    store: Store, tmp_path: Path, stripe_sandbox: StripeSandbox
) -> None:
    """The parent registers one webhook endpoint on the sandbox's Stripe emulator and hands its
    fresh secret to each process, a restarted one too: deliveries before and after both first
    processes are killed are all accepted (200) and logged."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    state = {"stripe": {"api_key": STRIPE_KEY, "base_url": stripe_sandbox.base_url}}
    (sandbox / "state.json").write_text(json.dumps(state), encoding="utf-8")
    parent = start(store.url, tmp_path, "hooked", "--processes", "2", "--hook-sandbox")
    try:
        endpoints = stripe_sandbox.sdk.v1.webhook_endpoints.list(params={"limit": 100}).data
        assert [e.url for e in endpoints] == [f"{parent.url}/webhooks/stripe"]
        customers = []
        first = serving_children(parent.process.pid)
        for victim in [None, *sorted(first)]:
            if victim is not None:
                os.kill(victim, signal.SIGKILL)
                for _ in range(300):
                    now = serving_children(parent.process.pid)
                    if len(now) == 2 and victim not in now and await listening(parent.url):
                        break
                    await asyncio.sleep(0.2)
            for _ in range(3):
                made = stripe_sandbox.sdk.v1.customers.create(params={"name": "Acme GmbH"})
                customers.append(made.id)
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{stripe_sandbox.base_url}/_emulator/drain_webhooks") as r:
                    assert r.status == 200
                attempts = await stripe_sandbox.attempts(http)
        assert not alive(first)  # both first processes are gone: the last deliveries met new ones
        statuses = [a["status"] for a in attempts]
        assert statuses and set(statuses) <= {200, None}, attempts  # None: a killed connection
        logged_ids = logged_billing_events(store.url)
        created = {a["event"] for a in attempts if a["status"] == 200}
        assert created <= logged_ids and len(created) >= len(customers)
    finally:
        stop(parent)


async def listening(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as answer:
            return answer.status == 200
    except aiohttp.ClientError:
        return False


def logged_billing_events(url: str) -> set[str]:
    runtime = Runtime.open(url, initialise=False)
    try:
        with runtime.engine.connect() as conn:
            rows = conn.execute(select(events.c.event_id).where(events.c.source == "billing"))
            return {str(r.event_id) for r in rows}
    finally:
        runtime.close()
