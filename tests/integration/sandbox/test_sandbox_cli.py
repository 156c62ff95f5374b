"""``q2c sandbox up|status|down`` as a person runs it: three real systems and the test
OpenID provider, then none."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from quote2cash.defaults import packaged_config_dir

CATALOG = packaged_config_dir() / "catalog.yaml"


def q2c(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quote2cash.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_sandbox_up_status_down(tmp_path: Path) -> None:
    started = q2c("sandbox", "up", cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state_file = tmp_path / ".q2c/sandbox/state.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        state = json.loads(state_file.read_text())
        key = state["stripe"]["api_key"]
        assert key not in started.stdout and key not in started.stderr
        assert state["oidc"]["client_secret"] not in started.stdout + started.stderr
        for needle in ("Stripe emulator", "Salesforce emulator", "Tryton", "OpenID", "127.0.0.1"):
            assert needle in started.stdout
        # Each system answers: Stripe wants its key, Tryton its JSON-RPC, Salesforce its TLS.
        req = urllib.request.Request(
            f"{state['stripe']['base_url']}/v1/customers",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.load(resp)["object"] == "list"
        status = q2c("sandbox", "status", cwd=tmp_path)
        assert status.returncode == 0 and status.stdout.count("yes") == 4
        checked = q2c("systems", "check", cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert key not in checked.stdout
        for role in ("crm", "erp", "billing"):
            assert role in checked.stdout
        creds = q2c("sandbox", "status", "--credentials", "--format", "json", cwd=tmp_path)
        given = {(r["system"], r["field"]): r["value"] for r in json.loads(creds.stdout)}
        tryton = json.loads((tmp_path / ".q2c/sandbox/tryton/sandbox.json").read_text())
        assert given[("billing (Stripe emulator)", "api_key")] == key
        assert given[("erp (Tryton)", "admin_password")] == tryton["admin_password"]
        assert given[("crm (Salesforce emulator)", "ca_file")] == state["salesforce"]["ca_file"]
        # The shipped catalog maps onto what the sandbox seeded ...
        good = q2c("catalog", "check", str(CATALOG), cwd=tmp_path)
        assert good.returncode == 0, good.stdout + good.stderr
        assert "catalog OK against" in good.stdout
        # ... and a catalog naming things no system has is reported, every one of them.
        broken = tmp_path / "catalog.yaml"
        broken.write_text(
            CATALOG.read_text()
            .replace("item: ONBOARD", "item: ONBOARD-XL")
            .replace("support_prem_monthly_eur", "support_gold_monthly_eur")
        )
        bad = q2c("catalog", "check", str(broken), cwd=tmp_path)
        assert bad.returncode == 1
        assert "ONBOARD-XL" in bad.stderr and "support_gold_monthly_eur" in bad.stderr
    finally:
        stopped = q2c("sandbox", "down", cwd=tmp_path)
    assert stopped.returncode == 0 and "tryton" in stopped.stdout
    after = q2c("sandbox", "status", cwd=tmp_path)
    assert after.returncode == 1 and "q2c sandbox up" in after.stderr
    for pid in (state["stripe"]["pid"], state["salesforce"]["pid"], state["oidc"]["pid"]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_sandbox_up_with_the_legacy_erp_instead_of_tryton(tmp_path: Path) -> None:
    started = q2c("sandbox", "up", "--erp", "legacy", cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((tmp_path / ".q2c/sandbox/state.json").read_text())
        password = state["legacy_erp"]["password"]
        assert "legacy ERP" in started.stdout and "Tryton" not in started.stdout
        assert password not in started.stdout + started.stderr
        checked = q2c("systems", "check", cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "erp" in checked.stdout and password not in checked.stdout
        # the item master the catalog maps to is the legacy ERP's
        good = q2c("catalog", "check", str(CATALOG), cwd=tmp_path)
        assert good.returncode == 0, good.stdout + good.stderr
    finally:
        stopped = q2c("sandbox", "down", cwd=tmp_path)
    assert stopped.returncode == 0 and "legacy_erp" in stopped.stdout
