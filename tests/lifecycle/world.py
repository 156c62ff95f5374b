"""One sandbox world (Stripe and Salesforce emulators, a real Tryton or the legacy ERP) and one
``q2c serve`` subprocess hooked to it, as a user runs them; ``quiesce`` waits until the hub has
settled."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import stripe
import yaml
from pydantic import SecretStr
from sqlalchemy import func, select

from quote2cash.defaults import packaged_config_dir
from quote2cash.demo.sandbox import DemoSandbox
from quote2cash.engine.queries import EventRow, failed_events, list_events
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import event_state, events, subjects
from support.load import load_factor

CONFIG = packaged_config_dir()
POLL_SECONDS = 1.0
ERPS = {"tryton": "tryton", "legacy": "legacy_erp"}
"""``Q2C_LIFECYCLE_ERP`` -> the hub's ``systems.yaml`` kind of that ERP."""
STALL_SECONDS = 45.0
"""Longer than any one event takes; shorter than the engine's retry backoff grows to."""
SERVE_CODE = "from quote2cash.cli import app; app()"


class NotSettled(AssertionError):
    """The hub still had work after the deadline."""


@dataclass
class LifecycleWorld:
    folder: Path
    sandbox: DemoSandbox
    serve: subprocess.Popen[str]
    base_url: str
    db_url: str
    runtime: Runtime
    sf: Any
    """simple-salesforce, logged in as the sales org's user."""
    collection: str = "send_invoice"
    """How billing collects (the hub's setting): send_invoice or charge_automatically."""
    scope: set[str] | None = None
    erp: str = "tryton"
    usage_token: str | None = None
    """The customer's usage feed's API token (``driver.USAGE_VIA_HUB``), made on first use."""

    def stripe(self) -> stripe.StripeClient:
        return self.sandbox.stripe()

    def pending(self) -> int:
        """Events the hub still has to run (held exceptions are not pending); only those of
        ``self.scope`` when set (a shrinking trial ignores an earlier run's stuck contract)."""
        q = (
            select(func.count())
            .select_from(event_state.join(subjects, subjects.c.subject == event_state.c.subject))
            .where(event_state.c.status == "pending", subjects.c.held_by.is_(None))
        )
        if self.scope is not None:
            q = q.where(event_state.c.subject.in_(sorted(self.scope)))
        with self.runtime.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def logged(self) -> int:
        with self.runtime.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    def undelivered_webhooks(self) -> int:
        """Billing events whose webhook has not yet been answered by the hub."""
        newest = self.stripe().v1.events.list(params={"limit": 100}).data
        return sum(int(e.pending_webhooks or 0) for e in newest)

    def stuck(self) -> list[EventRow]:
        """Events still pending, oldest first (what a hub that does not settle waits on)."""
        return [e for e in list_events(self.runtime, limit=1000) if e.status == "pending"]

    def exceptions(self) -> list[EventRow]:
        return failed_events(self.runtime)

    def finished(self) -> int:
        with self.runtime.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(event_state)
                    .where(event_state.c.status != "pending")
                ).scalar_one()
            )

    def quiesce(self, *, seconds: float = 180.0, stall: float = STALL_SECONDS) -> float:
        """Wait until nothing is pending, every webhook is delivered and two polls in a row
        brought nothing new; returns the seconds waited. Work that makes no progress for
        ``stall`` seconds (an event retrying with backoff) does not settle."""
        started = time.monotonic()
        quiet_since: float | None = None
        last = -1
        progress, progressed_at = (-1, -1), started
        while time.monotonic() - started < seconds * load_factor():
            if self.serve.poll() is not None:
                raise AssertionError(f"q2c serve exited with {self.serve.returncode}")
            count = self.logged()
            busy = self.pending() or self.undelivered_webhooks() or count != last
            last = count
            now = time.monotonic()
            if (count, self.finished()) != progress:
                progress, progressed_at = (count, self.finished()), now
            elif busy and now - progressed_at > stall * load_factor():
                raise NotSettled(
                    f"the hub made no progress for {now - progressed_at:.0f} s "
                    f"(load average {os.getloadavg()[0]:.1f}): {self.pending()} events pending"
                )
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= 2.5 * POLL_SECONDS:
                return now - started
            time.sleep(0.3)
        raise NotSettled(
            f"the hub did not settle within {time.monotonic() - started:.0f} s "
            f"(load average {os.getloadavg()[0]:.1f}): {self.pending()} events pending, "
            f"{self.undelivered_webhooks()} webhooks undelivered"
        )


def _plain(value: Any) -> Any:
    """A connector setting as YAML can hold it (secrets revealed: this is the sandbox's file)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def systems_yaml(
    folder: Path, sandbox: DemoSandbox, base_url: str, collection: str, erp: str
) -> Path:
    """The hub's ``systems.yaml`` for the sandbox, as an operator writes one: billing collects
    by ``collection``; this hub's webhook endpoint is registered in billing and its callout URL
    in the CRM."""
    systems = sandbox.systems()
    assert systems.crm and systems.erp and systems.billing
    client = sandbox.stripe()
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": f"{base_url}/webhooks/stripe", "enabled_events": ["*"]}
    )
    sandbox.salesforce_admin("PATCH", "config", {"callout_url": f"{base_url}/webhooks/salesforce"})
    billing = _plain(systems.billing.config.model_dump())
    billing.update(collection_method=collection, webhook_secret=str(endpoint.secret))
    document = {
        "crm": {"kind": "salesforce", "settings": _plain(systems.crm.config.model_dump())},
        "erp": {"kind": ERPS[erp], "settings": _plain(systems.erp.config.model_dump())},
        "billing": {"kind": "stripe", "settings": billing},
    }
    path = folder / "systems.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    return path


def hub_config(folder: Path, *, taxed: bool) -> Path:
    """The hub's rules folder: the repository's, or a copy without ``tax.yaml`` (untaxed)."""
    if taxed:
        return CONFIG
    untaxed = folder / "config"
    shutil.copytree(CONFIG, untaxed, ignore=shutil.ignore_patterns("tax.yaml"), dirs_exist_ok=True)
    return untaxed


def _serve(
    folder: Path, sandbox: DemoSandbox, db_url: str, collection: str, *, taxed: bool, erp: str
) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = systems_yaml(folder, sandbox, base_url, collection, erp)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("Q2C_") or k.startswith("Q2C_AUDIT_")  # the store's audit key
    }
    env["Q2C_SF_CALLOUT_SECRET"] = str(sandbox.state["salesforce"]["callout_secret"])
    args = [
        "serve",
        "--port",
        str(port),
        "--config",
        str(config),
        "--db",
        db_url,
        "--poll-seconds",
        str(POLL_SECONDS),
        "--config-dir",
        str(hub_config(folder, taxed=taxed)),
    ]
    log = open(folder / "serve.log", "w", encoding="utf-8")  # noqa: SIM115 - the child's
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_CODE, *args],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        cwd=folder,
        text=True,
        start_new_session=True,
    )
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("q2c serving on "):
        proc.kill()
        raise AssertionError(f"q2c serve did not start: {line!r}; see {folder / 'serve.log'}")
    assert line.split()[-1] == base_url, line
    return proc, base_url


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextmanager
def lifecycle_world(
    folder: Path, collection: str = "send_invoice", *, taxed: bool = True, erp: str = "tryton"
) -> Iterator[LifecycleWorld]:
    """Start the sandbox on ``erp`` (tryton or legacy) and ``q2c serve`` in ``folder``
    (``taxed``: with the tax rules); stop both afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    sandbox_dir = folder / "sandbox"
    db_url = f"sqlite:///{folder / 'hub.sqlite'}"
    try:
        sandbox = DemoSandbox.up(sandbox_dir, lambda _msg: None, erp=erp)
        Runtime.open(db_url, sqlite_synchronous="NORMAL").close()
        proc, base_url = _serve(folder, sandbox, db_url, collection, taxed=taxed, erp=erp)
        try:
            runtime = Runtime.open(db_url, sqlite_synchronous="NORMAL")
            try:
                yield LifecycleWorld(
                    folder,
                    sandbox,
                    proc,
                    base_url,
                    db_url,
                    runtime,
                    sandbox.salesforce(),
                    collection,
                    erp=erp,
                )
            finally:
                runtime.close()
        finally:
            _stop(proc)
    finally:
        DemoSandbox.down(sandbox_dir)
