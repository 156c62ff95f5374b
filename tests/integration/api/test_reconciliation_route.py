"""``GET /v1/reconciliation``: bearer auth like every /v1 route, 404 until a run was kept in the
store, then the kept report as JSON (ids per system, money as strings, repairs)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import aiohttp

from quote2cash.api.app import HubStatus, build_app
from quote2cash.engine.hub_state import RECONCILIATION, keep_state
from quote2cash.engine.runtime import Runtime
from quote2cash.reconcile.model import Drift, DriftKind, Repair, Report
from support.identity import first_admin, new_operator, token_of

from .conftest import served


def report() -> Report:
    drift = Drift(
        DriftKind.AMOUNT,
        "invoice",
        "INV-0001",
        {"billing": ("in_1",), "erp": ("12",)},
        "total 98.00 USD in billing, 99.00 USD in erp",
        Repair("correct ERP document 12 to billing's total"),
        {"billing": str(Decimal("98.00")), "erp": "99.00"},
    )
    at = datetime(2026, 12, 6, 4, tzinfo=UTC)
    return Report(at, at, None, {"billing": {"invoice": 1}}, (drift,))


async def test_the_kept_report_is_served_to_token_holders_only(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    status = HubStatus()
    token = token_of(runtime, new_operator(runtime, first_admin(runtime), "finance", "viewer"))
    headers = {"Authorization": f"Bearer {token}"}
    async with served(build_app(runtime, status=status)) as url:
        async with http.get(f"{url}/v1/reconciliation") as anonymous:
            assert anonymous.status == 401
        async with http.get(
            f"{url}/v1/reconciliation", headers={"Authorization": "Bearer nope"}
        ) as unknown:
            assert unknown.status == 401
        async with http.get(f"{url}/v1/reconciliation", headers=headers) as before:
            assert before.status == 404
            assert "no reconciliation has run yet" in (await before.json())["error"]["message"]
        kept = report()
        keep_state(runtime.engine, RECONCILIATION, kept.to_json(), at=kept.finished_at, by="test")
        async with http.get(f"{url}/v1/reconciliation", headers=headers) as answer:
            assert answer.status == 200
            body = (await answer.json())["report"]
    assert body["drift_count"] == 1 and body["by_kind"] == {"amount": 1}
    [drift] = body["drifts"]
    assert drift["id"] == kept.drifts[0].id and drift["id"].startswith("D-")
    assert drift["ids"] == {"billing": ["in_1"], "erp": ["12"]}
    assert drift["repair"]["event_id"] is None
    assert drift["repair"]["proposal"] == "correct ERP document 12 to billing's total"
