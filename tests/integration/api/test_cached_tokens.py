"""The bearer check answered from the token cache denies and audits exactly as the store check
does, a revocation or a lost role through the API takes effect on the very next request, and the
check and the invoice read never wait for a writer holding the token's row (or SQLite's write
lock), on SQLite and PostgreSQL."""

from __future__ import annotations

import aiohttp
from sqlalchemy import select, update

from quote2cash.api.app import build_app
from quote2cash.engine.runtime import Runtime
from quote2cash.identity.tokens import cached_operator
from quote2cash.store.schema import api_tokens, audit_log
from support.identity import first_admin, new_operator, token_of

from .conftest import served

PAUSE = "/v1/systems/erp/pause"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_cached_tokens_deny_audit_and_lose_access_as_the_store_says(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    admin = first_admin(runtime)
    rui = new_operator(runtime, admin, "rui", "operator")
    reading = token_of(runtime, rui, "rui-dashboard", roles=("viewer",))
    acting = token_of(runtime, rui, "rui-runbook")
    admins = token_of(runtime, admin, "admin-console")
    async with served(build_app(runtime)) as base:
        for token in (reading, acting, admins):
            async with http.get(f"{base}/v1/systems", headers=bearer(token)) as r:
                assert r.status == 200, await r.text()
            assert cached_operator(runtime, token, client="127.0.0.1") is not None
        async with http.post(base + PAUSE, json={"reason": "close"}, headers=bearer(reading)) as r:
            assert r.status == 403, await r.text()
            assert "needs the role 'operator'" in (await r.json())["error"]["message"]
        async with http.post(base + PAUSE, json={"reason": "close"}, headers=bearer(acting)) as r:
            assert r.status == 200, await r.text()
        with runtime.engine.connect() as conn:
            actors = conn.execute(
                select(audit_log.c.actor).where(audit_log.c.action.like("%pause%"))
            ).all()
        assert [a.actor for a in actors] == ["rui"]
        async with http.post(
            f"{base}/v1/operators/rui/roles", json={"roles": ["viewer"]}, headers=bearer(admins)
        ) as r:
            assert r.status == 200, await r.text()
        async with http.post(
            f"{base}/v1/systems/erp/resume", json={"reason": "open"}, headers=bearer(acting)
        ) as r:
            assert r.status == 403, await r.text()
        async with http.post(
            f"{base}/v1/tokens/rui-dashboard/revoke", json={}, headers=bearer(admins)
        ) as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{base}/v1/systems", headers=bearer(reading)) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthenticated"
        async with http.get(f"{base}/v1/systems", headers=bearer(acting)) as r:
            assert r.status == 200  # rui's other token still reads


async def test_the_token_check_and_invoice_read_do_not_wait_for_a_writer(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    dana = new_operator(runtime, first_admin(runtime), "dana", "viewer")
    token = token_of(runtime, dana, "dash")
    async with served(build_app(runtime, store_timeout=3.0)) as base:
        with runtime.engine.begin() as writer:  # holds SQLite's write lock / the token's row
            writer.execute(
                update(api_tokens)
                .where(api_tokens.c.name == "dash")
                .values(created_by=api_tokens.c.created_by)
            )
            for _ in range(2):  # the store check, then the cached one
                async with http.get(f"{base}/v1/invoices/in_unknown", headers=bearer(token)) as r:
                    assert r.status == 404, await r.text()
                    assert "no invoice known by 'in_unknown'" in await r.text()
