"""The maker-checker replay in headless Chromium: operator A finds the deal by its contract
number, sees its trace and requests a finance replay of its invoice event; A cannot approve it;
finance approver B approves; the replay runs; the audit shows both decisions and verifies."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from integration.console.deal import CONTRACT, run_pending
from integration.console.site import ConsoleSite
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.queries import find_event
from quote2cash.engine.replay import list_requests

SHOTS = os.environ.get("Q2C_CONSOLE_SCREENSHOTS")
"""A folder (e.g. docs/) to copy the trace and exception-queue screenshots into."""


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(browser: Browser, site: ConsoleSite, name: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(f"{site.url}/console/")
    await expect(page).to_have_url(f"{site.url}/console/sign-in?next=%2Fconsole%2F")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", site.passwords[name])
    await page.click("button:has-text('Sign in')")
    await expect(page.locator("header .who")).to_contain_text(name)
    return page


def _shot(tmp: Path, name: str) -> Path:
    path = tmp / name
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
    return path


async def test_finance_replay_needs_a_second_person(
    site: ConsoleSite, browser: Browser, tmp_path: Path
) -> None:
    deal = site.deal
    a = await signed_in(browser, site, "olivia")
    await a.fill("input[name=q]", CONTRACT)
    await a.press("input[name=q]", "Enter")
    await expect(a).to_have_url(f"{site.url}/console/trace/{deal.correlation_id}")
    timeline = a.locator(".timeline")
    await expect(timeline.locator(".mark.lane-billing.kind-step")).to_have_count(2)
    await expect(timeline.locator(".mark.lane-erp.kind-step")).to_have_count(2)
    await expect(timeline.locator(".mark.kind-failure")).to_have_count(2)

    row = a.locator(f"tr:has(code:text-is('{deal.invoice_event}'))")
    await row.locator("input[name=reason]").fill("ERP posting must be redone")
    await row.locator("button:has-text('Request replay')").click()
    await expect(a).to_have_url(f"{site.url}/console/replays#request-1")
    request_row = a.locator("#request-1")
    await expect(request_row).to_contain_text("pending")
    await expect(request_row).to_contain_text("finance")
    await expect(request_row.locator("button")).to_have_count(0)
    await expect(request_row).to_contain_text("waiting for a second person")

    csrf = await a.locator("header input[name=csrf]").get_attribute("value")
    forced = await a.request.post(
        f"{site.url}/console/replays/1/approve",
        form={"csrf": csrf or "", "note": "my own"},
        max_redirects=0,
    )
    assert forced.status == 403
    assert "cannot also decide it" in await forced.text()
    assert list_requests(site.runtime)[0].status == "pending"

    b = await signed_in(browser, site, "fiona")
    await b.goto(f"{site.url}/console/replays")
    await b.locator("#request-1 input[name=note]").first.fill("checked with AR")
    await b.locator("#request-1 button:has-text('Approve')").click()
    await expect(b.locator("#request-1")).to_contain_text("executed")
    await expect(b.locator("#request-1")).to_contain_text("fiona: checked with AR")

    await run_pending(site.runtime)  # the hub's worker runs the re-run event
    await b.goto(f"{site.url}/console/trace/{deal.correlation_id}")
    invoice_row = b.locator(f"tr:has(code:text-is('{deal.invoice_event}'))")
    await expect(invoice_row).to_contain_text("replayed as replay-1-")
    rerun = b.locator(".mark.kind-event", has_text="re-run of")
    await expect(rerun).to_contain_text(f"done (re-run of {deal.invoice_event})")
    rerun_id = f"replay-1-billing-{deal.invoice_event}"
    found = find_event(site.runtime, rerun_id)
    assert found is not None and found["event"]["status"] == "done"
    assert [s["name"] for s in found["steps"]] == ["erp.post_invoice", "crm.publish_invoice"]
    trace_png = _shot(tmp_path, "console-trace.png")
    await b.screenshot(path=str(trace_png), full_page=True)

    await a.goto(f"{site.url}/console/systems")
    await a.locator("#system-erp input[name=reason]").first.fill("Tryton upgrade")
    await a.locator("#system-erp button:has-text('Pause')").click()
    await a.goto(f"{site.url}/console/exceptions")
    await expect(a.locator("table[data-group=finance_approval]")).to_contain_text(
        "billing.payment.failed"
    )
    await expect(a.locator("table[data-group=data_correction]")).to_contain_text(
        "crm.account.updated"
    )
    await expect(a.locator(".alerts")).to_contain_text("paused by olivia: Tryton upgrade")
    queue_png = _shot(tmp_path, "console-exceptions.png")
    await a.screenshot(path=str(queue_png), full_page=True)

    await b.goto(f"{site.url}/console/audit")
    audit = b.locator("table.audit")
    await expect(audit.locator("tr", has_text="replay.requested")).to_contain_text("olivia")
    await expect(audit.locator("tr", has_text="replay.approved")).to_contain_text("fiona")
    await b.click("button:has-text('Verify the chain')")
    await expect(b.locator("#verify-result")).to_contain_text("chain intact")
    assert verify_audit(site.runtime.engine).ok

    if SHOTS:
        for shot in (trace_png, queue_png):
            shutil.copyfile(shot, Path(SHOTS) / shot.name)
