"""A report kept as JSON (``hub_state``) reads back as the same report: every drift with the same
id, values and proposal (``about`` included, so a repair still finds its event)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from quote2cash.reconcile.model import Drift, DriftKind, Repair, Report


def test_a_report_round_trips_through_its_json() -> None:
    at = datetime(2026, 12, 6, 4, 5, 6, tzinfo=UTC)
    drifts = (
        Drift(
            DriftKind.AMOUNT,
            "invoice",
            "INV-1",
            {"billing": ("in_1",), "erp": ("12", "13")},
            "total 98.00 USD in billing, 99.00 USD in erp",
            Repair("re-post", "billing.invoice.finalized", "evt_1", True, "in_1", "done"),
            {"billing": "98.00", "erp": "99.00"},
        ),
        Drift(
            DriftKind.ORPHAN, "customer", "c<1>", {"crm": ("001",)}, "only in CRM", Repair("look")
        ),
    )
    report = Report(at, at, None, {"invoice": {"billing": 1, "erp": 2}}, drifts)
    again = Report.from_json(json.loads(json.dumps(report.to_json())))
    assert again == report
    assert [d.id for d in again.drifts] == [d.id for d in drifts]
    assert again.drifts[0].repair.about == "in_1" and again.drifts[0].repair.replayable
    since = Report(at, at, at, {}, ())
    assert Report.from_json(since.to_json()).since == at
