"""/v1/events is paged by position (keyset): following ``next`` walks the whole log once, newest
first, or oldest first from ``after``; a page past the end has no ``next``; offsets and a pair of
cursors are refused with a 400 naming the parameter."""

from __future__ import annotations

from typing import Any

import aiohttp

from quote2cash.api.app import build_app
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from support.identity import first_admin, new_operator, token_of
from support.served import served


async def _walk(http: aiohttp.ClientSession, base: str, path: str, auth: dict[str, str]) -> Any:
    seen: list[str] = []
    pages = 0
    url: str | None = path
    while url is not None:
        async with http.get(base + url, headers=auth) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert body["count"] == len(body["data"])
        seen += [e["id"] for e in body["data"]]
        url = body.get("next")
        pages += 1
    return seen, pages


async def test_following_next_reads_the_log_once_in_either_direction(runtime: Runtime) -> None:
    runtime.log.append_many(
        [
            new_event(
                "billing.invoice.finalized",
                f"contract:C-{i % 2}",
                {"n": i},
                source="billing",
                id=f"evt_{i}",
                correlation_id=f"deal-{i % 2}",
            )
            for i in range(1, 8)
        ]
    )
    viewer = new_operator(runtime, first_admin(runtime), "pager", "viewer")
    auth = {"Authorization": f"Bearer {token_of(runtime, viewer)}"}
    newest_first = [f"evt_{i}" for i in range(7, 0, -1)]
    async with served(build_app(runtime)) as base, aiohttp.ClientSession() as http:
        seen, pages = await _walk(http, base, "/v1/events?limit=3", auth)
        assert (seen, pages) == (newest_first, 3)
        seen, pages = await _walk(http, base, "/v1/events?limit=3&after=0", auth)
        assert (seen, pages) == (newest_first[::-1], 3)
        seen, pages = await _walk(http, base, "/v1/events?after=2&limit=5", auth)
        assert (seen, pages) == ([f"evt_{i}" for i in range(3, 8)], 2)  # a full page, then none
        # Filters are kept across pages.
        seen, _ = await _walk(http, base, "/v1/events?subject=contract:C-1&limit=1", auth)
        assert seen == ["evt_7", "evt_5", "evt_3", "evt_1"]
        async with http.get(base + "/v1/events?limit=2", headers=auth) as r:
            first = await r.json()
        assert first["next"].startswith("/v1/events?") and "before=" in first["next"]

        for bad, named in (
            ("/v1/events?offset=3", "offset"),
            ("/v1/events?after=-1", "after"),
            ("/v1/events?before=x", "before"),
            ("/v1/events?after=1&before=5", "after"),
        ):
            async with http.get(base + bad, headers=auth) as r:
                body = await r.json()
                assert r.status == 400 and body["error"]["code"] == "invalid_parameter", bad
                assert named in body["error"]["message"], (bad, body)
