"""``python -m quote2cash.sandbox.tryton up|status|down`` leaves a usable server and then none."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.sandbox.tryton import (
    TemplateInfo,
    TrytonSandbox,
    load_endpoint,
    read_state,
    server_alive,
)


def _cli(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quote2cash.sandbox.tryton", *args, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_up_status_down(tmp_path: Path, tryton_template: TemplateInfo) -> None:
    workdir = tmp_path / "erp"
    up = _cli("up", workdir=workdir)
    try:
        assert up.returncode == 0, up.stderr
        state = read_state(workdir)
        assert state is not None and server_alive(state)
        assert stat.S_IMODE(os.stat(workdir / "sandbox.json").st_mode) == 0o600
        assert state["password"] not in up.stdout + up.stderr
        assert f"base_url: {state['base_url']}" in up.stdout

        async with TrytonClient(
            state["base_url"], state["database"], state["username"], state["password"]
        ) as erp:
            assert await erp.model("company.company").search_count([]) == 2

        endpoint = load_endpoint(workdir)
        assert endpoint is not None and endpoint.base_url == state["base_url"]
        async with endpoint.client() as erp:
            gmbh = endpoint.setup.companies["gmbh"].company
            [row] = await erp.model("company.company").read([gmbh], ["rec_name"])
            assert row["rec_name"] == "Q2C GmbH"

        status = _cli("status", workdir=workdir)
        assert status.returncode == 0 and "running: True" in status.stdout
        assert state["password"] not in status.stdout
    finally:
        down = _cli("down", workdir=workdir)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not server_alive(state)
    assert not (workdir / f"{state['database']}.sqlite").exists()
    assert _cli("status", workdir=workdir).returncode == 1


def test_prune_removes_only_templates_of_other_versions(
    tmp_path: Path, tryton_template: TemplateInfo
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    current = TrytonSandbox(cache_dir=cache).template_key()
    for key in ("8.0.0-0123456789abcdef", current):
        (cache / f"{key}.sqlite").write_bytes(b"template")
        meta = {"location": str(cache / f"{key}.sqlite")}
        (cache / f"{key}.sqlite.json").write_text(json.dumps(meta))
    removed = TrytonSandbox(cache_dir=cache).prune_templates()
    assert removed == [str(cache / "8.0.0-0123456789abcdef.sqlite")]
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [
        f"{current}.sqlite",
        f"{current}.sqlite.json",
    ]
