"""POST /v1/usage on a live app over a real store: a batch is committed whole with a receipt,
bad records come back quarantined with their reasons, and every bad request is a 4xx naming
what was expected (too many records, no records, no token, wrong role, bad body)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quote2cash.api.app import build_app
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.settings import get_settings
from support.identity import first_admin, new_operator, token_of
from support.served import served
from support.usage_terms import log_subscription


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 4, 1, tzinfo=UTC))


@pytest.fixture(autouse=True)
def usage_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("Q2C_USAGE_DIR", str(tmp_path / "usage"))
    get_settings.cache_clear()
    yield tmp_path / "usage"
    get_settings.cache_clear()


@pytest.fixture
async def base(runtime: Runtime) -> AsyncIterator[tuple[str, dict[str, str]]]:
    log_subscription(runtime, current_period_start=datetime(2026, 3, 15, tzinfo=UTC))
    admin = first_admin(runtime)
    tokens = {
        "meterd": token_of(runtime, new_operator(runtime, admin, "meterd", "operator")),
        "vic": token_of(runtime, new_operator(runtime, admin, "vic", "viewer")),
    }
    async with served(build_app(runtime)) as url:
        yield url, tokens


async def post(
    http: aiohttp.ClientSession, url: str, token: str | None, body: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body)
    async with http.post(f"{url}/v1/usage", data=data, headers=headers) as r:
        return r.status, await r.json()


def row(rid: str, **over: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "subscription": "C-1",
        "meter": "api_calls",
        "quantity": "2",
        "timestamp": "2026-03-20T10:00:00Z",
        **over,
    }


async def test_a_batch_is_accepted_with_its_receipt_and_reasons(
    http: aiohttp.ClientSession, base: tuple[str, dict[str, str]]
) -> None:
    url, tokens = base
    body = {
        "source": "meterd",
        "records": [row("a"), row("b", quantity=-1), row("c", quantity=1.5)],
    }
    status, answer = await post(http, url, tokens["meterd"], body)
    assert status == 200, answer
    assert (answer["accepted"], answer["quarantined"], answer["duplicate"]) == (2, 1, 0)
    assert answer["submitted_by"] == "meterd" and len(answer["content_sha256"]) == 64
    [refused] = answer["quarantined_records"]
    assert refused["record_id"] == "b" and refused["field"] == "quantity"
    assert "expected zero or more" in refused["reason"]
    status, again = await post(http, url, tokens["meterd"], body)
    assert status == 200 and (again["accepted"], again["duplicate"]) == (0, 2)
    status, fixed = await post(
        http,
        url,
        tokens["meterd"],
        {**body, "records": [row("a", quantity="3")], "corrections": True},
    )
    assert status == 200 and fixed["corrected"] == 1


async def test_bad_requests_are_4xx_naming_what_was_expected(
    http: aiohttp.ClientSession, base: tuple[str, dict[str, str]]
) -> None:
    url, tokens = base
    big = {"source": "meterd", "records": [row(f"r{i}") for i in range(10_001)]}
    status, answer = await post(http, url, tokens["meterd"], big)
    assert status == 413 and "at most 10000" in answer["error"]["message"]
    status, answer = await post(http, url, tokens["meterd"], {"source": "meterd", "records": []})
    assert status == 422 and "records" in answer["error"]["message"]
    status, answer = await post(http, url, None, {"source": "meterd", "records": [row("a")]})
    assert status == 401
    status, answer = await post(
        http, url, tokens["vic"], {"source": "meterd", "records": [row("a")]}
    )
    assert status == 403
    for bad in (
        {"records": [row("a")]},
        {"source": "", "records": [row("a")]},
        {"source": "meterd", "records": "nope"},
        {"source": "meterd", "records": [row("a")], "extra": 1},
    ):
        status, answer = await post(http, url, tokens["meterd"], bad)
        assert status == 400, (bad, answer)
    status, answer = await post(http, url, tokens["meterd"], b"{not json")
    assert status == 400
    # odd values inside records are quarantined, never a 500
    odd = [row("x", quantity={"a": 1}), row("y", timestamp=None), 7, None, row("z", id=["l"])]
    status, answer = await post(http, url, tokens["meterd"], {"source": "meterd", "records": odd})
    assert status == 200 and answer["quarantined"] == 4 and answer["accepted"] == 1
    lone = {"source": "meterd", "records": [row("\ud800", meter="\ud800")]}
    status, answer = await post(http, url, tokens["meterd"], lone)
    assert status == 400 and "not valid JSON" in answer["error"]["message"]
    nul = [row("nul\u0000", subscription="C-\u0000"), row("m", meter="api\u0000calls")]
    status, answer = await post(http, url, tokens["meterd"], {"source": "meterd", "records": nul})
    assert status == 200 and answer["quarantined"] == 2, answer
