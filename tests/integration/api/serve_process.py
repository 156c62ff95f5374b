"""``q2c serve`` of this checkout as an operator runs it, for the tests that need the real
process: started on a store with an empty sandbox (no system configured, no polling, no
console), its JSON log in a file, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).parents[3] / "src"


@dataclass
class Serve:
    process: subprocess.Popen[str]
    url: str
    log: Path

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.text().splitlines() if x.startswith("{")]

    def messages(self) -> list[str]:
        return [x["message"] for x in self.lines()]


def serve_env(**settings: str) -> dict[str, str]:
    """This environment without the caller's own ``Q2C_*`` settings (the audit key's kept), this
    checkout's source first, JSON logs at INFO, and ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("Q2C_") or k.startswith("Q2C_AUDIT_") or k == "Q2C_REQUIRE_SERVICES"
    }
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.update(Q2C_LOG_LEVEL="INFO", Q2C_LOG_FORMAT="json", **settings)
    return env


def start_serve(
    url: str, folder: Path, *extra: str, name: str = "serve", env: dict[str, str] | None = None
) -> Serve:
    """``q2c serve --db url`` with ``extra`` options, once it says where it serves."""
    sandbox = folder / "sandbox"
    sandbox.mkdir(exist_ok=True)
    if not (sandbox / "state.json").exists():  # no system: an empty sandbox
        (sandbox / "state.json").write_text("{}", encoding="utf-8")
    command = [sys.executable, "-m", "quote2cash.cli", "serve", "--db", url, "--port", "0"]
    command += ["--poll-seconds", "0", "--no-console", "--no-hook-sandbox"]
    command += ["--workdir", str(sandbox), *extra]
    log = folder / f"{name}.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env or serve_env(),
            cwd=folder,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"serving on (http://\S+)", line)
    if found is None:
        process.kill()
        pytest.fail(f"q2c serve did not start: {log.read_text()[-2000:]}")
    return Serve(process, found.group(1), log)


def stop(serve: Serve) -> int:
    """SIGTERM, then SIGKILL after 30 s; the exit code."""
    if serve.process.poll() is None:
        serve.process.send_signal(signal.SIGTERM)
        try:
            serve.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.process.kill()
            serve.process.wait()
    return serve.process.returncode
