"""``q2c demo --quick`` (what CI runs): the whole story on the three local systems, reconciled.

The demo starts its own sandbox (Stripe and Salesforce emulators, a Tryton server), so this test
needs nothing running; it checks what the demo printed and what it left in the hub's store.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from rich.console import Console

from conftest import missing_service
from quote2cash.demo import run_demo
from quote2cash.engine.queries import failed_events
from quote2cash.engine.runtime import Runtime
from quote2cash.sandbox import orchestrator


def test_quick_demo_reconciles_and_prints_the_summary(tmp_path: Path) -> None:
    if shutil.which("trytond", path=str(Path(sys.executable).parent)) is None:
        missing_service("trytond is not installed in this virtualenv (extra 'sandbox')")
    folder = tmp_path / "demo"
    console = Console(record=True, width=140, force_terminal=False, color_system=None)

    ok = run_demo(workdir=str(folder), quick=True, console=console)

    text = console.export_text()
    assert ok, text[-4000:]
    assert "summary" in text and "reconciled:" in text
    assert "three-way reconciliation (q2c reconcile): 0 drift(s)" in text
    for currency in ("EUR", "USD"):
        row = next(line for line in text.splitlines() if line.strip(" │|").startswith(currency))
        assert "equal to the cent" in row, row
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

    # the sandbox is stopped again, the hub's store stays for a look further
    assert orchestrator.read_state(folder / "sandbox") is None
    runtime = Runtime.open(f"sqlite:///{folder / 'hub.sqlite'}", initialise=False)
    try:
        failed = failed_events(runtime)
        assert [(f.type, f.category) for f in failed] == [("crm.opportunity.closed_won", "mapping")]
    finally:
        runtime.close()


def test_quick_demo_on_the_legacy_erp_reconciles(tmp_path: Path) -> None:
    """The same story with the legacy ERP (SOAP + batch files) in Tryton's place: the hub's
    flows use only the Erp role, so the three systems reconcile to the cent all the same."""
    folder = tmp_path / "demo"
    console = Console(record=True, width=140, force_terminal=False, color_system=None)

    ok = run_demo(workdir=str(folder), quick=True, console=console, erp="legacy")

    text = console.export_text()
    assert ok, text[-4000:]
    assert "Salesforce, Stripe and the legacy ERP" in text
    assert "three-way reconciliation (q2c reconcile): 0 drift(s)" in text
    for currency in ("EUR", "USD"):
        row = next(line for line in text.splitlines() if line.strip(" │|").startswith(currency))
        assert "equal to the cent" in row, row
    refund = next(line for line in text.splitlines() if "card refund" in line)
    assert "the legacy ERP open invoice, owes" in refund, refund
    assert "drained in order: yes" in text
    assert orchestrator.read_state(folder / "sandbox") is None
    runtime = Runtime.open(f"sqlite:///{folder / 'hub.sqlite'}", initialise=False)
    try:
        failed = failed_events(runtime)
        assert [(f.type, f.category) for f in failed] == [("crm.opportunity.closed_won", "mapping")]
    finally:
        runtime.close()
