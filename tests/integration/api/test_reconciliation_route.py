"""``GET /v1/reconciliation``: bearer auth like every /v1 route, 404 until a run was kept in the
store, then the kept report as JSON (ids per system, money as strings, repairs)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
from sqlalchemy import update

from quote2cash.api.app import HubStatus, build_app
from quote2cash.engine.events import new_event
from quote2cash.engine.hub_state import RECONCILIATION, keep_state
from quote2cash.engine.runtime import Runtime
from quote2cash.reconcile.model import Drift, DriftKind, Repair, Report
from quote2cash.store.schema import event_state
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


async def test_a_drift_of_the_kept_report_is_repaired_through_the_api(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    """The drift and its proposal come back from the store whole (``about`` included), so the
    repair finds the logged event to replay and files the request, in any serve process."""
    invoice = {"object": {"object": "invoice", "id": "in_drift7", "status": "open"}}
    logged = new_event("billing.invoice.finalized", "contract:D-7", invoice, source="billing")
    runtime.log.append(logged)
    with runtime.engine.begin() as conn:  # processed long ago, as a drifted invoice's event is
        conn.execute(update(event_state).values(status="done"))
    drift = Drift(
        DriftKind.STATUS,
        "invoice",
        "in_drift7",
        {"billing": ("in_drift7",), "erp": ("7",)},
        "open in billing, paid in erp",
        Repair("re-post the invoice", "billing.invoice.finalized", about="in_drift7"),
    )
    at = datetime(2026, 12, 6, 4, tzinfo=UTC)
    kept = Report(at, at, None, {"billing": {"invoice": 1}}, (drift,))
    keep_state(runtime.engine, RECONCILIATION, kept.to_json(), at=at, by="another process")
    token = token_of(runtime, new_operator(runtime, first_admin(runtime), "olga", "operator"))
    headers = {"Authorization": f"Bearer {token}"}
    async with served(build_app(runtime)) as url:
        async with http.post(
            f"{url}/v1/reconciliation/drifts/D-000000000000/repair", headers=headers, json={}
        ) as unknown:
            assert unknown.status == 404
        async with http.post(
            f"{url}/v1/reconciliation/drifts/{drift.id}/repair", headers=headers, json={}
        ) as answer:
            assert answer.status == 201, await answer.text()
            body = (await answer.json())["request"]
    assert body["requested_by"] == "olga"
    assert body["event_count"] == 1 and body["positions"] == [1]  # the one logged event
    assert body["finance_sensitive"] is True and drift.id in body["reason"]
