"""A real Prometheus server for tests: scrapes one target every second, evaluates the hub's shipped
alert rules every second, and answers queries; started on a free port, stopped cleanly.

    with running_prometheus("127.0.0.1:8080", bearer_token=token) as prometheus:
        prometheus.wait_for_alert("FinanceEventDeadLettered", state="firing")

Without the ``prometheus`` binary (Debian's package) it skips, or fails under
``Q2C_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from conftest import missing_service
from quote2cash.defaults import packaged_alert_rules

T = TypeVar("T")
PROMETHEUS = os.environ.get("Q2C_TEST_PROMETHEUS", "/usr/bin/prometheus")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def prometheus_config(
    target: str,
    *,
    rule_files: list[Path],
    metrics_path: str = "/metrics",
    token_file: Path | None = None,
) -> dict[str, Any]:
    """A prometheus.yml scraping ``target`` (host:port) and evaluating the rules, both every 1 s."""
    job: dict[str, Any] = {
        "job_name": "quote2cash",
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "metrics_path": metrics_path,
        "static_configs": [{"targets": [target]}],
    }
    if token_file is not None:
        job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [job],
    }


@dataclass
class PrometheusServer:
    """A running server: its HTTP API, and the log it wrote (for failure messages)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result: ``[{"metric": {...}, "value": [time, "text"]}, ...]``."""
        data = self.api("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The pending and firing alerts now (a resolved alert is no longer listed)."""
        alerts: list[dict[str, Any]] = self.api("/api/v1/alerts")["alerts"]
        return alerts

    def alert_states(self, name: str) -> list[str]:
        return [a["state"] for a in self.alerts() if a["labels"].get("alertname") == name]

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("/api/v1/rules")["groups"]
        return groups

    def last_evaluation(self, group: str) -> datetime | None:
        """When the rule group ``group`` was last evaluated (None before its first evaluation)."""
        for found in self.rule_groups():
            if found["name"] == group:
                stamp = re.sub(r"(\.\d{6})\d+", r"\1", found["lastEvaluation"])
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                return at if at.year > 1 else None
        raise AssertionError(f"no rule group {group!r} loaded")

    def wait_for_evaluation(self, group: str, after: datetime, timeout: float = 60.0) -> None:
        """Wait until ``group`` has been evaluated after ``after`` (aware UTC)."""

        def evaluated() -> bool:
            last = self.last_evaluation(group)
            return last is not None and last > after

        self.wait_until(evaluated, f"an evaluation of {group} after {after}", timeout)

    def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("/api/v1/targets")["activeTargets"]
        return targets

    def wait_until(self, probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the log."""
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited while waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.0f} s; {self.state()}")
            time.sleep(0.25)

    def wait_for_alert(self, name: str, state: str = "firing", timeout: float = 60.0) -> None:
        self.wait_until(lambda: state in self.alert_states(name), f"{name} {state}", timeout)

    def wait_for_no_alert(self, name: str, timeout: float = 60.0) -> None:
        self.wait_until(lambda: not self.alert_states(name), f"{name} resolved", timeout)

    def state(self) -> str:
        """Alerts, targets (with their last scrape error) and the log's end, for a failure."""
        try:
            seen = f"alerts {self.alerts()}; targets {self.targets()}"
        except (urllib.error.URLError, OSError, AssertionError) as exc:
            seen = f"API not answering ({exc})"
        return f"{seen}\n{self.tail()}"

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def running_prometheus(
    target: str,
    *,
    rule_files: list[Path] | None = None,
    bearer_token: str | None = None,
    metrics_path: str = "/metrics",
    startup_timeout: float = 60.0,
) -> Iterator[PrometheusServer]:
    """Prometheus scraping ``target`` (host:port) with the shipped rules (or ``rule_files``).

    Its data, configuration and token file live in a private temporary folder (0700, token 0600)
    removed on exit; the server is stopped with SIGTERM (killed after 20 s).
    """
    binary = shutil.which(PROMETHEUS)
    if binary is None:
        missing_service(f"{PROMETHEUS} missing (Debian's prometheus; make test installs it)")
    assert binary is not None
    workdir = Path(tempfile.mkdtemp(prefix="q2c-prometheus-"))
    workdir.chmod(0o700)
    try:
        token_file = None
        if bearer_token is not None:
            token_file = workdir / "token"
            token_file.touch(mode=0o600)
            token_file.write_text(bearer_token, encoding="utf-8")
        config = workdir / "prometheus.yml"
        rules = rule_files if rule_files is not None else [packaged_alert_rules()]
        settings = prometheus_config(
            target, rule_files=rules, metrics_path=metrics_path, token_file=token_file
        )
        config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as log_stream:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log_stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
        try:
            server.wait_until(lambda: _ready(server.url), "ready prometheus", startup_timeout)
            yield server
        finally:
            _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
