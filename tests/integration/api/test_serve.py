"""``q2c serve``: the API, the worker and the polling fallback in one process; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from contract.crm.salesforce_harness import SalesforceDesk
from quote2cash.api.serve import WEB_SWITCH_INTERVAL, ServeOptions, quick_gil_handoff, serve
from quote2cash.connectors.registry import Systems
from quote2cash.connectors.stripe import StripeBilling, StripeConfig, verify_webhook
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import intake_cursors

from .conftest import (
    STRIPE_KEY,
    StripeSandbox,
    callout_signature,
    eventually,
    logged,
    stripe_signature,
    won_deal,
)

CONFIG = packaged_config_dir()


async def test_serve_runs_api_worker_and_polling_until_stopped(
    db_url: str, stripe_sandbox: StripeSandbox, http: aiohttp.ClientSession
) -> None:
    runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL")
    billing = StripeBilling(StripeConfig.for_sandbox(stripe_sandbox.base_url, api_key=STRIPE_KEY))
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    secret: list[str] = []

    async def on_ready(url: str, app: web.Application) -> None:
        ready.set_result(url)

    options = ServeOptions(port=0, workers=True, poll_seconds=0.2, config_dir=CONFIG)
    switch_interval = sys.getswitchinterval()
    try:
        async with Systems(billing=billing) as systems:
            task = asyncio.create_task(
                serve(
                    runtime,
                    systems,
                    stop,
                    options,
                    stripe_verifier=lambda p, h: verify_webhook(p, h, secret[0]),
                    callout_secret=None,
                    on_ready=on_ready,
                )
            )
            base = await asyncio.wait_for(ready, 10)
            secret.append(stripe_sandbox.register(f"{base}/webhooks/stripe"))
            customer, _ = await asyncio.to_thread(stripe_sandbox.subscribe, "CN-SERVE-1")
            newest_first = stripe_sandbox.sdk.v1.events.list(params={"limit": 100}).data
            sent = {e.id for e in newest_first}

            def billing_cursor() -> str | None:
                with runtime.engine.connect() as conn:
                    return conn.execute(
                        select(intake_cursors.c.cursor).where(intake_cursors.c.source == "billing")
                    ).scalar_one_or_none()

            async def progress() -> tuple[dict[str, tuple[str, str]], str | None]:
                rows = await asyncio.to_thread(logged, runtime, source="billing")
                return {r.event_id: (r.type, r.status) for r in rows}, await asyncio.to_thread(
                    billing_cursor
                )

            seen, cursor = await eventually(
                progress,
                lambda p: (
                    set(p[0]) >= sent
                    and ("billing.customer.created", "done") in p[0].values()
                    and p[1] == newest_first[0].id
                ),
            )
            assert cursor == newest_first[0].id  # the poller read everything too...
            assert set(seen) == sent  # ...and each event is logged once, however it came
            created = logged(runtime, type="billing.customer.created")
            assert [(r.subject, r.status) for r in created] == [(f"billing:{customer}", "done")]
            attempts = await stripe_sandbox.attempts(http)
            assert attempts and all(a["status"] == 200 for a in attempts)

            async with http.get(f"{base}/health") as r:
                assert r.status == 200
                assert (await r.json())["worker"] == {"enabled": True, "running": True}
            # the worker's store threads hand the GIL back to the web loop every 0.5 ms...
            assert sys.getswitchinterval() == pytest.approx(WEB_SWITCH_INTERVAL)

            stop.set()
            await asyncio.wait_for(task, 15)
            assert sys.getswitchinterval() == switch_interval  # ...and only while it runs
            try:
                async with http.get(f"{base}/health") as r:
                    raise AssertionError(f"still serving after stop: {r.status}")
            except aiohttp.ClientConnectionError:
                pass
    finally:
        runtime.close()


async def test_q2c_serve_process_wires_secrets_and_stops_on_sigterm(
    tmp_path: Path, stripe_sandbox: StripeSandbox, http: aiohttp.ClientSession
) -> None:
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    webhook_secret = "whsec_process_test_secret"
    callout_secret = "process-callout-secret"
    systems_yaml = tmp_path / "systems.yaml"
    systems_yaml.write_text(
        "billing:\n  kind: stripe\n  settings:\n"
        f"    api_key: {STRIPE_KEY}\n    base_url: {stripe_sandbox.base_url}\n"
        "    webhook_secret: ${STRIPE_WHSEC}\n",
        encoding="utf-8",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("Q2C_") or k == "Q2C_REQUIRE_SERVICES" or k.startswith("Q2C_AUDIT_")
    }
    env.update(STRIPE_WHSEC=webhook_secret, Q2C_SF_CALLOUT_SECRET=callout_secret)
    code = "import typer; from quote2cash.api.cli import serve_command; typer.run(serve_command)"
    args = [
        "--port",
        "0",
        "--config",
        str(systems_yaml),
        "--db",
        db,
        "--poll-seconds",
        "0",
        "--config-dir",
        str(CONFIG),
    ]
    proc = subprocess.Popen(  # noqa: ASYNC220 - its pipes are read off the loop
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith("q2c serving on http://127.0.0.1:"), line
        base = line.split()[-1]

        payload = json.dumps(
            {
                "id": "evt_process_1",
                "object": "event",
                "type": "customer.created",
                "created": int(time.time()),
                "data": {"object": {"id": "cus_process", "object": "customer", "metadata": {}}},
            }
        ).encode()
        headers = {"Stripe-Signature": stripe_signature(payload, webhook_secret)}
        async with http.post(f"{base}/webhooks/stripe", data=payload, headers=headers) as r:
            assert r.status == 200, await r.text()
        body = json.dumps(
            {
                "messageId": "m-p",
                "eventType": "opportunity.closed_won",
                "opportunity": {"Id": "006000000000PRC001", "Contract_Number__c": "CN-P"},
            }
        ).encode()
        headers = {"X-Q2C-Signature": callout_signature(body, callout_secret)}
        async with http.post(f"{base}/webhooks/salesforce", data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{base}/health") as r:
            assert r.status == 200
            assert (await r.json())["worker"]["running"] is True

        runtime = Runtime.open(db)
        try:
            rows = await eventually(
                lambda: asyncio.to_thread(logged, runtime, event_id="evt_process_1"),
                lambda rs: bool(rs) and rs[0].status == "done",
            )
            assert rows[0].status == "done"  # the process's worker handled it
            assert len(logged(runtime, event_id="closed_won:006000000000PRC001")) == 1
        finally:
            runtime.close()

        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(asyncio.to_thread(proc.wait), 20)
        assert returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert webhook_secret not in err and callout_secret not in err
    assert "serving on" in err


async def test_q2c_serve_on_the_sandbox_hooks_the_emulators_to_itself(
    tmp_path: Path,
    stripe_sandbox: StripeSandbox,
    crm_desk: SalesforceDesk,
    http: aiohttp.ClientSession,
) -> None:
    """With a sandbox's state.json, serve registers its Stripe webhook endpoint (and uses the
    endpoint's fresh secret) and points the Salesforce emulator's callout at itself."""
    callout_secret = "sandbox-callout-secret"
    crm_desk.admin("PATCH", "config", {"callout_secret": callout_secret})
    emulator = crm_desk.emulator
    sandbox_dir = tmp_path / "sandbox"
    sandbox_dir.mkdir()
    (sandbox_dir / "state.json").write_text(
        json.dumps(
            {
                "stripe": {"pid": 0, "base_url": stripe_sandbox.base_url, "api_key": STRIPE_KEY},
                "salesforce": {
                    "pid": 0,
                    "instance_url": emulator.instance_url,
                    "ca_file": emulator.ca_path,
                    "callout_secret": callout_secret,
                },
            }
        ),
        encoding="utf-8",
    )
    stale = stripe_sandbox.sdk.v1.webhook_endpoints.create(
        params={
            "url": "http://127.0.0.1:9/webhooks/stripe",
            "enabled_events": ["*"],
            "metadata": {"registered_by": "q2c serve"},
        }
    )
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("Q2C_") or k.startswith("Q2C_AUDIT_")  # the store's audit key
    }
    code = "import typer; from quote2cash.api.cli import serve_command; typer.run(serve_command)"
    args = [
        "--port",
        "0",
        "--workdir",
        str(sandbox_dir),
        "--db",
        db,
        "--poll-seconds",
        "0",
        "--no-workers",
    ]
    proc = subprocess.Popen(  # noqa: ASYNC220 - its pipes are read off the loop
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    runtime = Runtime.open(db)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith("q2c serving on http://127.0.0.1:"), line
        base = line.split()[-1]
        assert crm_desk.admin("GET", "config")["callout_url"] == f"{base}/webhooks/salesforce"
        endpoints = stripe_sandbox.sdk.v1.webhook_endpoints.list().data
        assert [e.url for e in endpoints] == [f"{base}/webhooks/stripe"]  # the stale one went
        assert stale.id not in {e.id for e in endpoints}

        _, subscription = await asyncio.to_thread(stripe_sandbox.subscribe, "CN-SBX-1")
        opportunity = await asyncio.to_thread(won_deal, crm_desk, "CN-SBX-2")

        async def arrived() -> list[tuple[str, str]]:
            rows = await asyncio.to_thread(logged, runtime)
            return [(r.type, r.subject) for r in rows]

        types = await eventually(
            arrived,
            lambda rs: (
                ("billing.subscription.activated", "contract:CN-SBX-1") in rs
                and ("crm.opportunity.closed_won", "contract:CN-SBX-2") in rs
            ),
        )
        assert ("billing.subscription.activated", "contract:CN-SBX-1") in types
        activated = logged(runtime, type="billing.subscription.activated")
        assert [json.loads(r.data)["object"]["id"] for r in activated] == [subscription]
        assert len(logged(runtime, event_id=f"closed_won:{opportunity}")) == 1
        attempts = await stripe_sandbox.attempts(http)
        assert attempts and all(a["status"] == 200 for a in attempts)
        async with http.get(f"{base}/health") as r:
            assert (await r.json())["worker"] == {"enabled": False, "running": False}

        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 20) == 0
    finally:
        runtime.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert callout_secret not in err and "whsec_" not in err


async def test_health_reports_a_worker_that_could_not_start(
    runtime: Runtime, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """No catalog to run the flows with: the worker stops, /health says so (503), and intake
    keeps accepting webhooks, durably, for when the worker is back."""
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_ready(url: str, app: web.Application) -> None:
        ready.set_result(url)

    secret = "callout-no-worker"
    task = asyncio.create_task(
        serve(
            runtime,
            Systems(),
            stop,
            ServeOptions(port=0, poll_seconds=0, config_dir=tmp_path / "missing"),
            stripe_verifier=None,
            callout_secret=secret,
            on_ready=on_ready,
        )
    )
    try:
        base = await asyncio.wait_for(ready, 10)

        async def health() -> tuple[int, dict]:  # type: ignore[type-arg]
            async with http.get(f"{base}/health") as r:
                return r.status, await r.json()

        status, body = await eventually(health, lambda h: h[0] == 503)
        assert status == 503
        assert body["worker"] == {"enabled": True, "running": False}
        assert body["store"] == {"reachable": True}

        message = {
            "messageId": "m-nw",
            "eventType": "opportunity.closed_won",
            "opportunity": {"Id": "006000000000NWK001", "Contract_Number__c": "CN-NW"},
        }
        payload = json.dumps(message).encode()
        headers = {"X-Q2C-Signature": callout_signature(payload, secret)}
        async with http.post(f"{base}/webhooks/salesforce", data=payload, headers=headers) as r:
            assert r.status == 200
        async with http.post(f"{base}/webhooks/stripe", data=b"{}") as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "not_configured"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert [r.status for r in logged(runtime, event_id="closed_won:006000000000NWK001")] == [
        "pending"
    ]


async def test_serve_without_workers_freezes_its_start_up_heap_before_serving(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    """A web process has no worker to freeze the start-up heap; serve does it once started, so
    a full collection while requests wait never traverses that heap (up to 190 ms measured,
    docs/benchmarks.md)."""
    from quote2cash.engine import worker

    frozen: list[int] = []
    monkeypatch.setattr(worker, "_start_up_frozen", False)
    monkeypatch.setattr(worker.gc, "freeze", lambda: frozen.append(1))
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_ready(url: str, app: web.Application) -> None:
        assert frozen == []  # not before start-up is over (the hooks of on_ready included)
        ready.set_result(url)

    task = asyncio.create_task(
        serve(
            runtime,
            Systems(),
            stop,
            ServeOptions(port=0, workers=False, poll_seconds=0, console=None, config_dir=CONFIG),
            stripe_verifier=None,
            callout_secret=None,
            on_ready=on_ready,
        )
    )
    try:
        base = await asyncio.wait_for(ready, 10)
        async with http.get(f"{base}/health") as r:
            assert r.status == 200
        assert frozen == [1]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def test_overlapping_gil_handoffs_restore_the_interval_the_first_found() -> None:
    before = sys.getswitchinterval()
    first, second = quick_gil_handoff(), quick_gil_handoff()
    first.__enter__()
    second.__enter__()
    assert sys.getswitchinterval() == pytest.approx(WEB_SWITCH_INTERVAL)
    first.__exit__(None, None, None)  # the first closes while the second is still open
    assert sys.getswitchinterval() == pytest.approx(WEB_SWITCH_INTERVAL)
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == before
