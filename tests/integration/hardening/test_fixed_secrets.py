"""``q2c serve`` never trusts a secret published with the sandbox: the sandbox's fixed Stripe
webhook secret (from the sandbox with --no-hook-sandbox, or from a systems.yaml) is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.connectors.stripe.config import SANDBOX_WEBHOOK_SECRET
from quote2cash.engine.runtime import Runtime

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> str:
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    Runtime.open(db, initialise=True).close()
    return db


def refused(args: list[str], env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, ["serve", "--port", "0", *args], env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_the_sandbox_secret_in_a_systems_file_is_refused(tmp_path: Path, store: str) -> None:
    config = tmp_path / "systems.yaml"
    config.write_text(
        "billing:\n  kind: stripe\n  settings:\n"
        "    api_key: sk_test_fixed123456\n    base_url: http://127.0.0.1:1\n"
        f"    webhook_secret: {SANDBOX_WEBHOOK_SECRET}\n"
    )
    line = refused(["--config", str(config), "--db", store])
    assert "fixed, published" in line and "--hook-sandbox" in line
    assert SANDBOX_WEBHOOK_SECRET not in line


def test_the_sandbox_without_hooking_is_refused(tmp_path: Path, store: str) -> None:
    workdir = tmp_path / "sandbox"
    workdir.mkdir()
    fd = os.open(workdir / "state.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"stripe": {"pid": 1, "base_url": "http://127.0.0.1:1", "api_key": "sk_test_s1234"}},
            handle,
        )
    env = {"Q2C_SYSTEMS_CONFIG": ""}
    line = refused(["--no-hook-sandbox", "--workdir", str(workdir), "--db", store], env=env)
    assert "Stripe webhook secret" in line


def test_a_fixed_callout_secret_is_refused(tmp_path: Path, store: str) -> None:
    config = tmp_path / "systems.yaml"
    config.write_text("{}\n")
    line = refused(
        ["--config", str(config), "--db", store],
        env={"Q2C_SF_CALLOUT_SECRET": "q2c-emulator-secret"},
    )
    assert "Salesforce callout secret" in line
