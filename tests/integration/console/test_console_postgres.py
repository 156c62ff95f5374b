"""The console's reads on PostgreSQL: search by contract number and by another system's id
(cross-reference), and the trace, over a store the engine populated."""

from __future__ import annotations

import aiohttp
import pytest

from integration.console.deal import CONTRACT, populate
from integration.console.people import make_admin, make_operator
from integration.console.site import SIGNIN_CSRF, served_runtime
from quote2cash.engine.runtime import Runtime

pytestmark = pytest.mark.postgres


async def test_search_and_trace_on_postgres(pg_url: str) -> None:
    runtime = Runtime.open(pg_url)
    try:
        deal = await populate(runtime)
        password = make_operator(runtime, make_admin(runtime), "victor", ["viewer"])
        async with (
            served_runtime(runtime) as url,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        ):
            async with http.get(f"{url}/console/sign-in") as answer:
                token = SIGNIN_CSRF.search(await answer.text())
            assert token is not None
            form = {"name": "victor", "password": password, "signin_csrf": token.group(1)}
            async with http.post(f"{url}/console/sign-in", data=form) as answer:
                assert answer.status == 200
            for key in (CONTRACT, "93", deal.failed_payment):
                async with http.get(
                    f"{url}/console/search", params={"q": key}, allow_redirects=False
                ) as answer:
                    assert answer.headers["Location"] == f"/console/trace/{deal.correlation_id}"
            async with http.get(f"{url}/console/trace/{deal.correlation_id}") as answer:
                page = await answer.text()
        assert 'class="mark kind-step lane-erp"' in page
        assert 'class="mark kind-failure lane-billing"' in page
        assert "party.party,7" in page
    finally:
        runtime.close()
