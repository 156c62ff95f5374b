"""``q2c sandbox up`` part for the provider: a detached process described in the state file."""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path

from quote2cash.sandbox import orchestrator


def test_the_provider_runs_as_a_process_and_its_credentials_go_to_the_state_file(
    tmp_path: Path,
) -> None:
    state: dict[str, object] = {}
    described = orchestrator.start_oidc_provider(tmp_path, state)
    try:
        issuer = described["issuer"]
        assert issuer.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration") as resp:
            assert json.load(resp)["issuer"] == issuer
        path = tmp_path / orchestrator.STATE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        saved = json.loads(path.read_text())["oidc"]
        assert saved["client_id"] == "q2c-console" and saved["client_secret"]
        assert {u["username"] for u in saved["users"]} == {"alice", "bob"}
        assert all(u["password"] and u["email"] for u in saved["users"])
        public = orchestrator.status(tmp_path)["identity (OpenID Connect provider)"]
        assert public == {"url": issuer, "running": True}
        assert saved["client_secret"] not in json.dumps(orchestrator.status(tmp_path))
    finally:
        stopped = orchestrator.down(tmp_path)
    assert "oidc" in stopped
