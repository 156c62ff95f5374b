"""What ``q2c demo --quick`` on Tryton must print and leave behind, checked once for the run
that CI makes of it: the built wheel's, from an empty folder (``tests/e2e/test_wheel.py``)."""

from __future__ import annotations

import re
from pathlib import Path

from quote2cash.engine.queries import failed_events
from quote2cash.engine.runtime import Runtime
from quote2cash.sandbox import orchestrator


def check_reconciled(text: str) -> None:
    """The demo's three-way reconciliation found nothing, and each currency's row is equal."""
    assert "three-way reconciliation (q2c reconcile): 0 drift(s)" in text
    for currency in ("EUR", "USD"):
        row = next(line for line in text.splitlines() if line.strip(" │|").startswith(currency))
        assert "equal to the cent" in row, row


def check_left_behind(folder: Path) -> None:
    """The sandbox is stopped again; the hub's store stays, with the one unmapped deal failed."""
    assert orchestrator.read_state(folder / "sandbox") is None
    runtime = Runtime.open(f"sqlite:///{folder / 'hub.sqlite'}", initialise=False)
    try:
        failed = failed_events(runtime)
        assert [(f.type, f.category) for f in failed] == [("crm.opportunity.closed_won", "mapping")]
    finally:
        runtime.close()


def check_quick_demo(text: str, folder: Path) -> None:
    """``text``: what the demo printed (140 columns); ``folder``: its working folder."""
    assert "summary" in text and "reconciled:" in text
    check_reconciled(text)
    assert "LEGACY-ANALYTICS" in text and "mapping" in text
    assert "nothing was written to any system" in text
    assert "declined card" in text
    assert "Open, balance" in text or "Overdue, balance" in text
    refund = next(line for line in text.splitlines() if "card refund" in line)
    assert "refunded in Stripe (paid)" in refund and "Tryton posted, owes" in refund, refund
    assert "Partially Refunded" in refund, refund
    assert "drained in order: yes" in text
    assert f"q2c dlq list --db sqlite:///{folder / 'hub.sqlite'}" in text
    assert "q2c audit verify" in text
    flat = " ".join(text.split())  # the summary's table wraps long rows
    kpis = re.search(
        r"KPI order activation (.*) KPI invoice generation lag (.*) "
        r"KPI amendment failure rate (.*) KPI sync backlog (.{1,60})",
        flat,
    )
    assert kpis is not None, flat[-4000:]
    activation, lag, _, backlog = kpis.groups()
    for entity in ("US", "DE"):
        assert re.search(rf"{entity} billing p50 [0-9.]+ (s|min) / p95", activation), activation
        assert re.search(rf"{entity} erp p50 [0-9.]+ (s|min) / p95", activation), activation
        assert re.search(rf"{entity} crm p50 [0-9.]+ (s|min) / p95", lag), lag
    assert "erp" not in backlog  # the ERP window drained; the unmapped deal waits (none)
    check_left_behind(folder)
