"""The console over real HTTP: sessions, cookie flags, CSRF, roles, search and trace."""

from __future__ import annotations

import html
import json

import aiohttp
from sqlalchemy import select

from integration.console.deal import CONTRACT, CUSTOMER, INVOICE, INVOICE_NUMBER, run_pending
from integration.console.site import ConsoleSite, sign_in
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.control import system_status
from quote2cash.engine.queries import find_event
from quote2cash.engine.replay import list_requests
from quote2cash.store.schema import audit_log


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_a_page_without_a_session_redirects_to_sign_in(site: ConsoleSite) -> None:
    async with _session() as http:
        async with http.get(
            f"{site.url}/console/trace/{site.deal.correlation_id}", allow_redirects=False
        ) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == (
                f"/console/sign-in?next=%2Fconsole%2Ftrace%2F{site.deal.correlation_id}"
            )
        async with http.post(
            f"{site.url}/console/systems/erp/pause", data={"reason": "x"}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
    assert not any(s["paused"] for s in system_status(site.runtime))


async def test_the_session_cookie_is_httponly_samesite_and_scoped(site: ConsoleSite) -> None:
    async with _session() as http:
        async with http.get(f"{site.url}/console/sign-in") as answer:
            token = answer.cookies["q2c_signin"].value
        async with http.post(
            f"{site.url}/console/sign-in",
            data={"name": "olivia", "password": site.passwords["olivia"], "signin_csrf": token},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
            cookie = answer.cookies["q2c_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/console"
    assert not cookie["secure"]  # plain http here; https (or a proxy saying so) adds Secure
    assert int(cookie["max-age"]) > 0


async def test_behind_https_the_cookie_is_secure(site: ConsoleSite) -> None:
    async with _session() as http:
        async with http.get(f"{site.url}/console/sign-in") as answer:
            token = answer.cookies["q2c_signin"].value
        async with http.post(
            f"{site.url}/console/sign-in",
            data={"name": "olivia", "password": site.passwords["olivia"], "signin_csrf": token},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
        ) as answer:
            assert answer.cookies["q2c_session"]["secure"] is True


async def test_a_wrong_password_is_refused_without_a_session(site: ConsoleSite) -> None:
    async with _session() as http:
        async with http.get(f"{site.url}/console/sign-in") as answer:
            token = answer.cookies["q2c_signin"].value
        async with http.post(
            f"{site.url}/console/sign-in",
            data={"name": "olivia", "password": "guess", "signin_csrf": token},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 401
            assert "q2c_session" not in answer.cookies
            assert "guess" not in await answer.text()


async def test_a_sign_in_form_from_elsewhere_is_refused(site: ConsoleSite) -> None:
    async with (
        _session() as http,
        http.post(
            f"{site.url}/console/sign-in",
            data={"name": "olivia", "password": site.passwords["olivia"]},
            allow_redirects=False,
        ) as answer,
    ):
        assert answer.status == 403
        assert "q2c_session" not in answer.cookies


async def test_a_post_without_the_sessions_csrf_token_is_refused(site: ConsoleSite) -> None:
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        for sent in ({}, {"csrf": "forged"}, {"csrf": csrf[:-1]}):
            async with http.post(
                f"{site.url}/console/systems/erp/pause",
                data={"reason": "maintenance", **sent},
                allow_redirects=False,
            ) as answer:
                assert answer.status == 403
                assert "CSRF" in await answer.text()
        assert not any(s["paused"] for s in system_status(site.runtime))
        async with http.post(
            f"{site.url}/console/systems/erp/pause",
            data={"reason": "maintenance", "csrf": csrf},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
    [erp] = [s for s in system_status(site.runtime) if s["system"] == "erp"]
    assert erp["paused"] and erp["changed_by"] == "olivia"


async def test_a_viewer_sees_no_actions_and_cannot_force_one(site: ConsoleSite) -> None:
    async with _session() as http:
        csrf = await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/trace/{site.deal.correlation_id}") as answer:
            assert answer.status == 200
            page = await answer.text()
        assert "Request replay" not in page
        async with http.get(f"{site.url}/console/systems") as answer:
            assert "Pause</button>" not in await answer.text()
        async with http.post(
            f"{site.url}/console/replays",
            data={"csrf": csrf, "event_id": site.deal.invoice_event, "reason": "x"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 403
            assert "needs the role 'operator'" in html.unescape(await answer.text())
        async with http.post(
            f"{site.url}/console/systems/crm/pause",
            data={"csrf": csrf, "reason": "x"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 403
    assert list_requests(site.runtime) == []
    assert not any(s["paused"] for s in system_status(site.runtime))


async def test_sign_out_ends_the_session(site: ConsoleSite) -> None:
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.post(
            f"{site.url}/console/sign-out", data={"csrf": csrf}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
            session_id = answer.cookies["q2c_session"].value
        assert session_id == ""
    async with (
        _session() as other,
        other.get(f"{site.url}/console/", allow_redirects=False) as answer,
    ):
        assert answer.status == 303


async def test_any_business_key_finds_the_deal(site: ConsoleSite) -> None:
    cid = site.deal.correlation_id
    async with _session() as http:
        await sign_in(http, site, "victor")
        for key in (
            CONTRACT,
            f"contract:{CONTRACT}",
            "006000000000001AAA",
            "001000000000001AAA",
            CUSTOMER,
            INVOICE,
            INVOICE_NUMBER,
            "93",  # the ERP's invoice id, through the cross-reference table
            cid,
            site.deal.failed_payment,
        ):
            async with http.get(
                f"{site.url}/console/search", params={"q": key}, allow_redirects=False
            ) as answer:
                assert answer.status == 303, key
                assert answer.headers["Location"] == f"/console/trace/{cid}", key
        async with http.get(f"{site.url}/console/search", params={"q": "C-NOPE"}) as answer:
            assert answer.status == 404
            assert "Nothing in the hub matches C-NOPE" in await answer.text()


async def test_the_trace_draws_each_system_in_its_lane_with_links(site: ConsoleSite) -> None:
    async with _session() as http:
        await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/trace/{site.deal.correlation_id}") as answer:
            page = await answer.text()
    assert 'class="mark kind-step lane-billing"' in page
    assert page.index("billing.create_customer") < page.index("erp.create_sales_order")
    assert 'class="mark kind-step lane-erp"' in page and 'class="mark kind-step lane-crm"' in page
    assert 'class="mark kind-failure lane-billing"' in page
    assert "field &#39;payment_method&#39; is missing" in page
    assert 'href="http://stripe.example.test/v1/customers/cus_Console1"' in page
    assert (
        'href="https://sf.example.test/services/data/v62.0/sobjects/Opportunity/'
        '006000000000001AAA"' in page
    )
    assert "party.party,7" in page


async def test_audit_verify_reports_an_intact_chain(site: ConsoleSite) -> None:
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.post(f"{site.url}/console/audit/verify", data={"csrf": csrf}) as answer:
            page = await answer.text()
    verified = verify_audit(site.runtime.engine)
    assert len(verified.chains) > 1, "the worker's steps are on a chain of its own"
    chains = len(verified.chains)
    assert f"Verified: {verified.checked} entries in {chains} chains, every chain intact." in page


async def test_an_operator_without_finance_role_cannot_decide_a_finance_replay(
    site: ConsoleSite,
) -> None:
    async with _session() as maker, _session() as checker:
        maker_csrf = await sign_in(maker, site, "olivia")
        async with maker.post(
            f"{site.url}/console/replays",
            data={
                "csrf": maker_csrf,
                "event_id": site.deal.invoice_event,
                "include_processed": "on",
                "reason": "post again",
            },
        ) as answer:
            assert answer.status == 200
        checker_csrf = await sign_in(checker, site, "oscar")
        async with checker.get(f"{site.url}/console/replays") as answer:
            page = await answer.text()
        assert 'id="request-1"' in page and "Approve</button>" not in page
        async with checker.post(
            f"{site.url}/console/replays/1/approve",
            data={"csrf": checker_csrf},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 403
            assert "lacks the finance_approver role" in html.unescape(await answer.text())
    assert list_requests(site.runtime)[0].status == "pending"


async def test_a_bulk_replay_previews_the_exact_set_before_requesting(site: ConsoleSite) -> None:
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.post(
            f"{site.url}/console/replays/preview",
            data={"csrf": csrf, "correlation_id": site.deal.correlation_id},
        ) as answer:
            page = await answer.text()
        assert "Dry run: 2 event(s) would be replayed" in page
        assert site.deal.failed_payment in page and site.deal.account_update in page
        assert site.deal.invoice_event not in page
        assert list_requests(site.runtime) == []
        async with http.post(
            f"{site.url}/console/replays/preview",
            data={"csrf": csrf, "since": "yesterday"},
        ) as answer:
            assert answer.status == 400
            assert "field 'since' is 'yesterday'" in html.unescape(await answer.text())


async def test_text_from_data_is_escaped(site: ConsoleSite) -> None:
    from quote2cash.engine.events import new_event

    site.runtime.log.append(
        new_event(
            "crm.note.added",
            "contract:<b>bold</b>",
            {"text": "<script>alert(1)</script>"},
            id="<img src=x onerror=alert(1)>",
            correlation_id="cid-<script>",
        )
    )
    async with _session() as http:
        await sign_in(http, site, "victor")
        async with http.get(f"{site.url}/console/trace/cid-%3Cscript%3E") as answer:
            page = await answer.text()
        assert answer.status == 200
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
        assert "<script>" not in page


async def test_a_one_time_password_must_be_changed_before_any_page(site: ConsoleSite) -> None:
    from quote2cash.identity import Operator
    from quote2cash.identity.accounts import add_operator

    admin = Operator("admin", frozenset({"admin"}), via="password")
    one_time = add_operator(site.runtime, "nadia", ["viewer"], by=admin)
    async with _session() as http:
        async with http.get(f"{site.url}/console/sign-in") as answer:
            token = answer.cookies["q2c_signin"].value
        form = {"name": "nadia", "password": one_time, "signin_csrf": token}
        async with http.post(
            f"{site.url}/console/sign-in", data=form, allow_redirects=False
        ) as answer:
            assert answer.status == 200
            assert "q2c_session" not in answer.cookies
            assert "Choose your password" in await answer.text()
        change = {
            "name": "nadia",
            "old_password": one_time,
            "new_password": "nadia's own pass phrase",
            "new_password_again": "nadia's own pass phrase",
            "signin_csrf": token,
        }
        async with http.post(
            f"{site.url}/console/password", data=change, allow_redirects=False
        ) as answer:
            assert answer.status == 303
            assert answer.cookies["q2c_session"].value
        async with http.get(f"{site.url}/console/") as answer:
            assert "nadia" in await answer.text()


async def test_correct_and_retry_runs_the_corrected_event_and_audits_the_diff(
    site: ConsoleSite,
) -> None:
    pos = find_event(site.runtime, site.deal.account_update)["event"]["pos"]  # type: ignore[index]
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.get(f"{site.url}/console/exceptions/{pos}/correct") as answer:
            form = html.unescape(await answer.text())
        assert '"country": ""' in form
        async with http.post(
            f"{site.url}/console/exceptions/{pos}/correct",
            data={"csrf": csrf, "data": "{not json", "reason": "x"},
        ) as answer:
            assert answer.status == 400
            assert "field 'data' is not JSON" in html.unescape(await answer.text())
        corrected = (
            '{"account_id": "001000000000001AAA", "name": "Console Test Ltd", "country": "DE"}'
        )
        async with http.post(
            f"{site.url}/console/exceptions/{pos}/correct",
            data={"csrf": csrf, "data": corrected, "reason": "country from the contract"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
    await run_pending(site.runtime)
    event = find_event(site.runtime, site.deal.account_update)
    assert event is not None and event["event"]["status"] == "done"
    assert [s["name"] for s in event["steps"]] == ["erp.update_customer"]
    with site.runtime.engine.connect() as conn:
        details = conn.execute(
            select(audit_log.c.actor, audit_log.c.details).where(
                audit_log.c.action == "exception.corrected"
            )
        ).one()
    assert details.actor == "olivia"
    assert {"op": "replace", "path": "/country", "old": "", "value": "DE"} in json.loads(
        details.details
    )["diff"]


async def test_resolve_needs_a_reason_and_closes_the_exception(site: ConsoleSite) -> None:
    pos = find_event(site.runtime, site.deal.failed_payment)["event"]["pos"]  # type: ignore[index]
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.post(
            f"{site.url}/console/exceptions/{pos}/resolve", data={"csrf": csrf, "reason": ""}
        ) as answer:
            assert answer.status == 400
        async with http.post(
            f"{site.url}/console/exceptions/{pos}/resolve",
            data={"csrf": csrf, "reason": "paid by bank transfer"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
        async with http.get(f"{site.url}/console/exceptions") as answer:
            assert f'id="exception-{pos}"' not in await answer.text()
    event = find_event(site.runtime, site.deal.failed_payment)
    assert event is not None and event["event"]["status"] == "resolved"


async def test_retry_requeues_and_a_finance_event_needs_a_replay_request(
    site: ConsoleSite,
) -> None:
    account = find_event(site.runtime, site.deal.account_update)
    payment = find_event(site.runtime, site.deal.failed_payment)
    assert account is not None and payment is not None
    async with _session() as http:
        csrf = await sign_in(http, site, "olivia")
        async with http.post(
            f"{site.url}/console/exceptions/{payment['event']['pos']}/retry",
            data={"csrf": csrf},
        ) as answer:
            assert answer.status == 400
            assert "request a replay of it" in html.unescape(await answer.text())
        async with http.post(
            f"{site.url}/console/exceptions/{account['event']['pos']}/retry",
            data={"csrf": csrf},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
    retried = find_event(site.runtime, site.deal.account_update)
    assert retried is not None and retried["event"]["status"] == "pending"
    still = find_event(site.runtime, site.deal.failed_payment)
    assert still is not None and still["event"]["status"] == "exception"
