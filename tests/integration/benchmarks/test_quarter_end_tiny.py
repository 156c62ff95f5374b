"""The quarter-end benchmark's core at tiny scale (issue 17): a handful of deals, one amendment
and one renewal through a ``q2c worker`` and a polling ``q2c serve`` on PostgreSQL, against the
emulators and Tryton on PostgreSQL; the three systems read back lose and duplicate nothing, and
the emulators count no call above the budgets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PG_ADMIN_URL, missing_service

BENCHMARK = Path(__file__).parents[3] / "benchmarks" / "quarter_end.py"


def test_a_tiny_quarter_end_loses_duplicates_and_overspends_nothing() -> None:
    if shutil.which("trytond", path=str(Path(sys.executable).parent)) is None:
        missing_service("trytond is not installed in this venv (install the 'sandbox' extra)")
    import psycopg

    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        missing_service(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}")
    args = ["--deals", "6", "--amendments", "1", "--renewals", "1", "--processes", "1"]
    args += ["--raw-invoices", "2", "--batch", "2", "--poll-seconds", "1", "--timeout", "240"]
    ran = subprocess.run(
        [sys.executable, str(BENCHMARK), *args],
        capture_output=True,
        text=True,
        timeout=420,
        env={**os.environ, "Q2C_TEST_PG": PG_ADMIN_URL},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    run = result["per_processes"]["1"]
    assert run["finished"], run
    assert (result["lost"], result["duplicated"]) == (0, 0), run
    assert result["over_budget_calls"] == 0, run
    assert run["deals_activated"] == 6
    assert run["stripe_invoices"] == 6 + 1 + 1  # first invoices, the amendment's, the renewal's
    assert run["erp_invoices_posted"] == run["stripe_invoices"]
