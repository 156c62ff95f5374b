"""Systems, reconciliation and a sign-in from elsewhere (OpenID Connect's start_session)."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from integration.console.site import ConsoleSite, Prepared, serving, sign_in
from quote2cash.console.views.signin import start_session
from quote2cash.engine.control import system_status
from quote2cash.engine.hub_state import RECONCILIATION, keep_state
from quote2cash.identity import Operator
from quote2cash.reconcile.model import Drift, DriftKind, Repair, Report


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_pause_window_and_resume_from_the_systems_page(site: ConsoleSite) -> None:
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.post(
            f"{site.url}/console/systems/erp/window",
            data={"csrf": csrf, "starts": "tomorrow", "ends": "", "reason": "upgrade"},
        ) as answer:
            assert answer.status == 400
            assert "field 'starts' is 'tomorrow'" in html.unescape(await answer.text())
        async with http.post(
            f"{site.url}/console/systems/mainframe/pause", data={"csrf": csrf, "reason": "x"}
        ) as answer:
            assert answer.status == 400
            assert "system 'mainframe' is unknown" in html.unescape(await answer.text())
        async with http.post(
            f"{site.url}/console/systems/erp/window",
            data={
                "csrf": csrf,
                "starts": "2020-01-01T00:00",
                "ends": "2100-01-01T00:00",
                "reason": "Tryton upgrade",
            },
        ) as answer:
            page = await answer.text()
        assert "Tryton upgrade (in force)" in page
        async with http.get(f"{site.url}/console/exceptions") as answer:
            assert "maintenance window: Tryton upgrade" in await answer.text()
        async with http.post(
            f"{site.url}/console/systems/erp/resume", data={"csrf": csrf, "reason": "done"}
        ) as answer:
            assert "Tryton upgrade (in force)" not in await answer.text()
    [erp] = [s for s in system_status(site.runtime) if s["system"] == "erp"]
    assert erp["windows"] == [] and not erp["paused"] and erp["changed_by"] == "olivia"


async def test_reconciliation_groups_drift_by_kind(prepared: Prepared, tmp_path: Path) -> None:
    now = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)

    def drift(kind: DriftKind, key: str) -> Drift:
        return Drift(kind, "invoice", key, {"billing": (key,)}, f"{kind} on {key}", Repair("look"))

    kept = Report(
        now,
        now,
        None,
        {"invoice": {"crm": 3, "billing": 3, "erp": 2}},
        (
            drift(DriftKind.MISSING, "in_1"),
            drift(DriftKind.MISSING, "in_2"),
            drift(DriftKind.AMOUNT, "in_3<b>"),
        ),
    )
    async with serving(prepared, tmp_path) as site, _session() as http:
        keep_state(site.runtime.engine, RECONCILIATION, kept.to_json(), at=now, by="test")
        await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/reconciliation") as answer:
            page = await answer.text()
    assert "<strong>3</strong> drift(s)" in page
    assert page.index('class="bar-label">missing') < page.index('class="bar-label">amount')
    assert 'class="bar-fill w10"' in page and 'class="bar-fill w5"' in page
    assert "in_3&lt;b&gt;" in page


async def test_start_session_signs_in_an_operator_authenticated_elsewhere(
    prepared: Prepared, tmp_path: Path
) -> None:
    async def callback(request: web.Request) -> web.StreamResponse:
        return await start_session(request, Operator("fiona", frozenset({"x"}), via="oidc"))

    def oidc(app: web.Application) -> None:
        app.router.add_get("/console/oidc/test-callback", callback)

    async with serving(prepared, tmp_path, extra=oidc) as site, _session() as http:
        async with http.get(
            f"{site.url}/console/oidc/test-callback",
            params={"next": "/console/replays"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/console/replays"
            assert answer.cookies["q2c_session"]["httponly"]
        async with http.get(f"{site.url}/console/replays") as answer:
            page = await answer.text()
        assert "fiona · finance_approver" in page  # the account's roles, not the caller's
        async with http.get(
            f"{site.url}/console/oidc/test-callback",
            params={"next": "https://evil.example/"},
            allow_redirects=False,
        ) as answer:
            assert answer.headers["Location"] == "/console/"


async def test_odd_input_gets_a_4xx_page_never_a_500(site: ConsoleSite) -> None:
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        for path in (
            "/console/nope",
            "/console/trace/%00",
            "/console/trace/" + "x" * 5000,
            "/console/search?q=" + "%C2%B2" * 400,
            "/console/search?q=%27%22%3C%3E",
            "/console/audit?before=abc",
            "/console/audit?before=" + "9" * 40,
            "/console/exceptions/abc/correct",
            "/console/exceptions/99999/correct",
        ):
            async with http.get(f"{site.url}{path}") as answer:
                assert 200 <= answer.status < 500, (path, answer.status)
                assert "Traceback" not in await answer.text()
        for path, form in (
            ("/console/replays/abc/approve", {}),
            ("/console/replays/999/approve", {}),
            ("/console/replays/999/reject", {"note": "no"}),
            ("/console/exceptions/99999/retry", {}),
            ("/console/exceptions/1/resolve", {"reason": "x"}),
            ("/console/exceptions/4/correct", {"data": "[1, 2]"}),
            ("/console/replays", {"reason": "x"}),
            ("/console/replays", {"event_id": "nope", "reason": "x"}),
            ("/console/replays/preview", {"until": "2026-13-45"}),
        ):
            async with http.post(
                f"{site.url}{path}", data={"csrf": csrf, **form}, allow_redirects=False
            ) as answer:
                assert 400 <= answer.status < 500, (path, answer.status, await answer.text())


async def test_a_quarantined_delivery_is_shown_and_can_be_discarded(site: ConsoleSite) -> None:
    from quote2cash.engine.quarantine import get_quarantined, quarantine_delivery

    delivery, _ = quarantine_delivery(
        site.runtime,
        "stripe",
        b'{"data": [1, 2, "<script>"]}',
        {"Content-Type": "application/json"},
        "field 'data' is a list; expected an object <b>",
    )
    async with _session() as http:
        await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/exceptions") as answer:
            page = await answer.text()
        assert f'id="quarantine-{delivery}"' in page and "expected an object &lt;b&gt;" in page
        assert "Discard</button>" not in page
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.post(
            f"{site.url}/console/quarantine/{delivery}/discard",
            data={"csrf": csrf, "reason": "a test sent by mistake"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
    kept = get_quarantined(site.runtime, delivery)
    assert kept.status == "discarded" and kept.decided_by == "olivia"


async def test_systems_show_recent_failed_calls(site: ConsoleSite) -> None:
    async with _session() as http:
        await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/systems") as answer:
            page = html.unescape(await answer.text())
    billing = page[page.index('id="system-billing"') : page.index('id="system-crm"')]
    assert "failed calls (15 min)</dt><dd>1, last" in billing
    assert "field 'payment_method' is missing" in billing
    erp = page[page.index('id="system-erp"') :]
    assert "failed calls (15 min)</dt><dd>none" in erp
