"""Start and stop the legacy ERP as a child process (tests, ``q2c sandbox up --erp legacy``)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from quote2cash.private_files import PRIVATE_UMASK, open_private

_READY = re.compile(r"listening on (http://\S+)")
ENDPOINT_FILE = "endpoint.json"


class LegacyErpStartError(RuntimeError):
    """The legacy ERP did not come up; the message points at its log."""


@dataclass(frozen=True)
class LegacyErpEndpoint:
    """Where a running legacy ERP listens, who may log in, and its drop folder."""

    base_url: str
    username: str
    password: str
    drop_folder: str
    data: str
    pid: int

    def __repr__(self) -> str:
        return f"LegacyErpEndpoint({self.base_url!r}, drop_folder={self.drop_folder!r})"


class LegacyErpSandbox:
    """One legacy ERP over ``workdir`` (its books survive a stop and a start)."""

    def __init__(self, workdir: Path, *, batch_seconds: float = 0.05, port: int = 0) -> None:
        self.workdir = workdir
        self.batch_seconds = batch_seconds
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self.endpoint: LegacyErpEndpoint | None = None

    def start(self, timeout: float = 30.0) -> LegacyErpEndpoint:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = self.workdir / "password"
        if not secret.exists():
            with open_private(secret, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(18))
        password = secret.read_text(encoding="utf-8").strip()
        data = self.workdir / "data"
        log_path = self.workdir / "legacy-erp.log"
        log = open_private(log_path, "w", encoding="utf-8")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quote2cash.sandbox.legacy_erp",
                "--data",
                str(data),
                "--port",
                str(self.port),
                "--batch-seconds",
                str(self.batch_seconds),
                "--username",
                "hub",
                "--password-file",
                str(secret),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            umask=PRIVATE_UMASK,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LegacyErpStartError(
                    f"legacy ERP exited with code {self._proc.returncode}; see {log_path}"
                )
            found = _READY.search(log_path.read_text(encoding="utf-8", errors="replace"))
            if found:
                self.endpoint = LegacyErpEndpoint(
                    base_url=found.group(1).rstrip("/"),
                    username="hub",
                    password=password,
                    drop_folder=str(data / "drop"),
                    data=str(data),
                    pid=self._proc.pid,
                )
                with open_private(self.workdir / ENDPOINT_FILE, "w", encoding="utf-8") as out:
                    json.dump(asdict(self.endpoint), out)
                return self.endpoint
            time.sleep(0.05)
        self.stop()
        raise LegacyErpStartError(
            f"legacy ERP did not start within {timeout:.0f} s; see {log_path}"
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        self._proc = None


def load_endpoint(workdir: Path) -> LegacyErpEndpoint | None:
    """The endpoint a sandbox in ``workdir`` recorded, if any."""
    path = workdir / ENDPOINT_FILE
    if not path.exists():
        return None
    return LegacyErpEndpoint(**json.loads(path.read_text(encoding="utf-8")))
