"""The data steward's page in headless Chromium: an operator sees an account's doubtful match
with its evidence and decides it is the same customer; the task closes, the decision is audited
and logs the event that resumes the account's deals. A viewer sees no buttons and is refused
when forcing the form; a form without the session's CSRF token is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright, expect
from sqlalchemy import select

from integration.console.site import ConsoleSite, sign_in
from integration.console.test_console_browser import signed_in
from quote2cash.canonical import Address, Customer
from quote2cash.defaults import packaged_config_dir
from quote2cash.flows.customers import TASK_DECIDED, task_key
from quote2cash.flows.deps import golden_customers
from quote2cash.masterdata import CustomerCandidate, GoldenCustomers, IngestOutcome
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.store.schema import audit_log, events

AT = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


def _account(local_id: str, name: str, city: str, postal: str) -> CustomerCandidate:
    address = Address(line1="1 Main St", city=city, postal_code=postal, country="US")
    return CustomerCandidate("crm", local_id, Customer(name=name, address=address), AT)


def _doubtful(site: ConsoleSite) -> tuple[GoldenCustomers, str]:
    golden = golden_customers(site.runtime, packaged_config_dir())
    assert golden is not None
    known = golden.ingest(_account("001K", "Marrowgate <Logistics> Inc", "Austin", "73301"))
    doubtful = golden.ingest(_account("001D", "Marrowgate <Logistics>", "Dallas", "75201"))
    assert doubtful.outcome is IngestOutcome.REVIEW
    return golden, known.global_id


async def test_an_operator_decides_a_doubtful_account_in_the_browser(
    site: ConsoleSite, browser: Browser
) -> None:
    golden, known = _doubtful(site)
    page = await signed_in(browser, site, "olivia")
    await page.click("nav a:has-text('Customers')")
    await expect(page).to_have_url(f"{site.url}/console/customers")
    task = page.locator("#task-crm-001D")
    await expect(task).to_contain_text("Marrowgate <Logistics>")  # escaped, not markup
    await expect(task.locator("table.evidence")).to_contain_text(known)
    await expect(task.locator("table.evidence")).to_contain_text("postal code different")
    await task.locator("select[name=same_as]").select_option(known)
    await task.locator("input[name=note]").first.fill("same company, Dallas office")
    await task.locator("button:has-text('Same customer')").click()
    await expect(page).to_have_url(f"{site.url}/console/customers")
    await expect(page.locator("#task-crm-001D")).to_have_count(0)
    await expect(page.locator("main")).to_contain_text("Nothing to review")

    assert golden.tasks() == []
    xref = XrefStore(site.runtime.engine)
    assert xref.global_id_for(Kind.CUSTOMER, "crm", "001D") == known
    with site.runtime.engine.connect() as conn:
        logged = conn.execute(
            select(events.c.subject).where(events.c.type == TASK_DECIDED)
        ).scalars()
        assert list(logged) == [task_key("crm", "001D")]
        decided = conn.execute(
            select(audit_log.c.actor, audit_log.c.details).where(
                audit_log.c.action == "masterdata.steward_task.decided"
            )
        ).one()
    assert decided.actor == "olivia" and "Dallas office" in decided.details


async def test_a_viewer_cannot_decide_and_forms_need_the_csrf_token(
    site: ConsoleSite, browser: Browser
) -> None:
    golden, known = _doubtful(site)
    page = await signed_in(browser, site, "victor")
    await page.goto(f"{site.url}/console/customers")
    task = page.locator("#task-crm-001D")
    await expect(task).to_contain_text(known)
    await expect(task.locator("button")).to_have_count(0)

    action = f"{site.url}/console/customers/crm/001D/decide"
    async with _session() as session:
        csrf = await sign_in(session, site, "victor")
        form = {"csrf": csrf, "decision": "same", "same_as": known}
        async with session.post(action, data=form) as answer:
            assert answer.status == 403 and "operator" in await answer.text()
    async with _session() as session:
        csrf = await sign_in(session, site, "oscar")
        async with session.post(action, data={"decision": "new"}) as answer:
            assert answer.status == 403 and "CSRF" in await answer.text()
        form = {"csrf": csrf, "decision": "same", "same_as": "CUS-nobody"}
        async with session.post(action, data=form) as answer:
            assert answer.status == 400 and known in await answer.text()
    assert len(golden.tasks()) == 1


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
