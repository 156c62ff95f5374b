"""The acceptance scenario on a real deal: Salesforce and Stripe emulators and a real Tryton
carried the deal through the hub; a real ``q2c serve`` subprocess serves the console over that
store; two people drive it in headless Chromium.

Operator A signs in, finds the deal by its contract number, sees its trace and requests a
finance replay of its invoice event; A cannot approve it (no button; 403 when forced); finance
approver B approves; the hub's worker runs the replay through the real systems; the audit page
shows both decisions and verify passes. Screenshots go to ``$Q2C_CONSOLE_SCREENSHOTS`` if set.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from playwright.async_api import Browser, Page, async_playwright, expect

from conftest import missing_service
from contract.crm.salesforce_harness import Line
from e2e.conftest import STRIPE_KEY, Hub, World, sf_products
from integration.console.people import make_admin, make_operator
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.engine.replay import list_requests

CHROMIUM = os.environ.get("Q2C_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("Q2C_CONSOLE_SCREENSHOTS")
CONTRACT = "C-CONSOLE-0001"
SRC = Path(__file__).parents[3] / "src"


@pytest.fixture
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


def _sandbox_state(world: World, folder: Path) -> Path:
    """A sandbox folder naming the world's emulators, as ``q2c sandbox up`` would write it."""
    folder.mkdir()
    state = {
        "stripe": {"pid": os.getpid(), "base_url": world.stripe_url, "api_key": STRIPE_KEY},
        "salesforce": {
            "pid": os.getpid(),
            "instance_url": world.sf_url,
            "ca_file": world.sf_ca,
            "callout_secret": None,
        },
    }
    path = folder / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    path.chmod(0o600)
    return folder


def _systems_yaml(world: World, folder: Path) -> Path:
    """The served hub's systems: the world's billing with a signing secret of its own (``q2c
    serve`` refuses the sandbox's published one). It serves the console only: the test's worker
    runs the flows, so it needs no CRM or ERP and hears no webhooks."""
    billing = {
        "api_key": STRIPE_KEY,
        "base_url": world.stripe_url,
        "webhook_secret": "whsec_" + secrets.token_hex(24),
    }
    path = folder / "systems.yaml"
    path.write_text(yaml.safe_dump({"billing": {"kind": "stripe", "settings": billing}}))
    path.chmod(0o600)
    return path


@pytest.fixture
def served(world: World, hub: Hub, tmp_path: Path) -> Iterator[str]:
    """``q2c serve`` on the hub's store (the test's worker runs the flows)."""
    url = hub.runtime.engine.url.render_as_string(hide_password=False)
    sandbox = _sandbox_state(world, tmp_path / "sandbox")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-c", "from quote2cash.cli import main; main()", "serve"]
    command += ["--db", url, "--port", "0", "--no-workers", "--poll-seconds", "0"]
    command += ["--workdir", str(sandbox), "--config", str(_systems_yaml(world, tmp_path))]
    log = tmp_path / "serve.log"
    with log.open("w") as errors:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
            cwd=tmp_path,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"serving on (http://\S+)", line)
        if found is None:
            process.kill()
            process.wait(timeout=30)
            pytest.fail(f"q2c serve did not start: {line!r} {log.read_text()[-2000:]}")
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _signed_in(browser: Browser, base: str, name: str, password: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/console/")
    await expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button:has-text('Sign in')")
    await expect(page.locator("header .who")).to_contain_text(name)
    return page


async def test_maker_checker_finance_replay_on_a_real_deal(
    world: World, hub: Hub, served: str, browser: Browser, tmp_path: Path
) -> None:
    desk = world.desk
    account = desk.account(
        "Console Acceptance Ltd",
        currency="USD",
        BillingStreet="1 Main St",
        BillingCity="Austin",
        BillingPostalCode="73301",
        BillingState="TX",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    desk.deal(
        account,
        "USD",
        [Line(sf_products(desk)["PLAT-SEAT"], 2, "49.00")],
        name="Console acceptance",
        Contract_Number__c=CONTRACT,
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    [invoice] = [
        e
        for e in list_events(hub.runtime, type_prefix="billing.invoice.", limit=1000)
        if e.status == "done" and e.type == "billing.invoice.finalized"
    ]
    admin = make_admin(hub.runtime)
    password = {
        name: make_operator(hub.runtime, admin, name, roles)
        for name, roles in (("alice", ["operator"]), ("bruno", ["finance_approver"]))
    }

    a = await _signed_in(browser, served, "alice", password["alice"])
    await a.fill("input[name=q]", CONTRACT)
    await a.press("input[name=q]", "Enter")
    await expect(a).to_have_url(f"{served}/console/trace/{invoice.correlation_id}")
    timeline = a.locator(".timeline")
    for lane in ("crm", "billing", "erp"):
        assert await timeline.locator(f".mark.kind-step.lane-{lane}").count() > 0, lane
    await expect(a.locator(".objects")).to_contain_text("billing")
    await expect(a.locator(".objects a[href*='/v1/subscriptions/sub_']").first).to_be_visible()

    row = a.locator(f"tr:has(code:text-is('{invoice.id}'))")
    await row.locator("input[name=reason]").fill("re-post the invoice to the ERP")
    await row.locator("button:has-text('Request replay')").click()
    [request] = list_requests(hub.runtime)
    assert request.finance_sensitive and request.requested_by == "alice"
    card = a.locator(f"#request-{request.id}")
    await expect(card).to_contain_text("pending")
    await expect(card.locator("button")).to_have_count(0)
    csrf = await a.locator("header input[name=csrf]").get_attribute("value")
    forced = await a.request.post(
        f"{served}/console/replays/{request.id}/approve",
        form={"csrf": csrf or "", "note": "self-approval"},
        max_redirects=0,
    )
    assert forced.status == 403
    assert list_requests(hub.runtime)[0].status == "pending"

    b = await _signed_in(browser, served, "bruno", password["bruno"])
    await b.goto(f"{served}/console/replays")
    await b.locator(f"#request-{request.id} button:has-text('Approve')").click()
    await expect(b.locator(f"#request-{request.id}")).to_contain_text("executed")

    await hub.settle()  # the hub's worker runs the re-run through the real systems
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    await b.goto(f"{served}/console/trace/{invoice.correlation_id}")
    await expect(b.locator(f"tr:has(code:text-is('{invoice.id}'))")).to_contain_text(
        "replayed as replay-"
    )
    await expect(
        b.locator(".mark.kind-event", has_text=f"done (re-run of {invoice.id})")
    ).to_have_count(1)
    trace_png = tmp_path / "console-trace.png"
    await b.screenshot(path=str(trace_png), full_page=True)

    await b.goto(f"{served}/console/audit")
    audit = b.locator("table.audit")
    await expect(audit.locator("tr", has_text="replay.requested")).to_contain_text("alice")
    await expect(audit.locator("tr", has_text="replay.approved")).to_contain_text("bruno")
    await b.click("button:has-text('Verify the chain')")
    await expect(b.locator("#verify-result")).to_contain_text("chain intact")
    assert (await asyncio.to_thread(verify_audit, hub.runtime.engine)).ok

    if SHOTS:
        await asyncio.to_thread(_keep, trace_png)


def _keep(shot: Path) -> None:
    assert SHOTS is not None
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, Path(SHOTS) / shot.name)
