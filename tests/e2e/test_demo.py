"""``q2c demo --quick`` on the legacy ERP: the whole story on the three local systems, reconciled.

The demo starts its own sandbox (Stripe and Salesforce emulators, the legacy ERP), so this test
needs nothing running; it checks what the demo printed and what it left in the hub's store. The
same demo on Tryton is run once, from the built wheel in an empty folder, and checked as fully
(``tests/e2e/test_wheel.py`` with ``support.demo_checks``): a second in-repo run of it cost CI a
minute and a half and checked nothing more.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from quote2cash.demo import run_demo
from support.demo_checks import check_left_behind, check_reconciled


def test_quick_demo_on_the_legacy_erp_reconciles(tmp_path: Path) -> None:
    """The same story with the legacy ERP (SOAP + batch files) in Tryton's place: the hub's
    flows use only the Erp role, so the three systems reconcile to the cent all the same."""
    folder = tmp_path / "demo"
    console = Console(record=True, width=140, force_terminal=False, color_system=None)

    ok = run_demo(workdir=str(folder), quick=True, console=console, erp="legacy")

    text = console.export_text()
    assert ok, text[-4000:]
    assert "Salesforce, Stripe and the legacy ERP" in text
    check_reconciled(text)
    refund = next(line for line in text.splitlines() if "card refund" in line)
    assert "the legacy ERP open invoice, owes" in refund, refund
    assert "drained in order: yes" in text
    check_left_behind(folder)
