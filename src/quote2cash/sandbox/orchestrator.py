"""``q2c sandbox up|down|status``: the three local systems as detached processes.

The Stripe and Salesforce emulators and the OpenID Connect test provider run as
``python -m quote2cash.sandbox.<name>`` children in their own sessions, logging to the sandbox
folder; Tryton runs through its own launcher. What
they listen on and their credentials are kept in ``<workdir>/state.json`` (mode 0600) so other
commands (``q2c systems check``, the demo, a worker) can connect; nothing printed holds a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quote2cash.private_files import PRIVATE_UMASK, open_private
from quote2cash.sandbox.oidc.setup import default_redirect_uris, prepare_provider
from quote2cash.sandbox.seed import seed_salesforce, seed_stripe
from quote2cash.sandbox.tryton import commands as tryton_commands

DEFAULT_WORKDIR = Path(".q2c") / "sandbox"
ERPS = ("tryton", "legacy")
LEGACY_USER = "hub"
LEGACY_BATCH_SECONDS = 1.0
STATE = "state.json"
_READY = re.compile(r"listening on (https?://\S+)", re.I)


class SandboxError(RuntimeError):
    """The sandbox could not be started; the message says which system and why."""


def _state_path(workdir: Path) -> Path:
    return workdir / STATE


def read_state(workdir: Path = DEFAULT_WORKDIR) -> dict[str, Any] | None:
    path = _state_path(workdir)
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def _write_state(workdir: Path, state: dict[str, Any]) -> None:
    path = _state_path(workdir)
    with open_private(path, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spawn(
    name: str, args: list[str], workdir: Path, env: dict[str, str], timeout: float = 30.0
) -> tuple[int, str]:
    """Start ``python -m <args>`` detached; wait until its log says where it listens."""
    log_path = workdir / f"{name}.log"
    log = open_private(log_path, "w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        umask=PRIVATE_UMASK,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SandboxError(
                f"{name} exited with code {proc.returncode} while starting; see {log_path}"
            )
        match = _READY.search(log_path.read_text(encoding="utf-8", errors="replace"))
        if match:
            return proc.pid, match.group(1).rstrip("/ ")
        time.sleep(0.05)
    _terminate(proc.pid)
    raise SandboxError(f"{name} did not report its address within {timeout:.0f} s; see {log_path}")


def _terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def up(
    workdir: Path = DEFAULT_WORKDIR,
    *,
    tryton_backend: str = "sqlite",
    erp: str = "tryton",
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Start whatever is not running yet; returns the public description (no secrets).

    ``erp`` is ``tryton`` or ``legacy`` (the legacy ERP: SOAP + batch files); the one chosen
    replaces the other if an earlier ``up`` started it, so the sandbox has one ERP."""
    if erp not in ERPS:
        raise SandboxError(f"unknown ERP {erp!r}; expected one of {', '.join(ERPS)}")
    workdir.mkdir(parents=True, exist_ok=True)
    state = read_state(workdir) or {}
    stripe = state.get("stripe")
    if not stripe or not _alive(int(stripe["pid"])):
        progress("starting the Stripe emulator")
        key = f"sk_test_q2c_{secrets.token_hex(12)}"
        pid, url = _spawn(
            "stripe",
            ["quote2cash.sandbox.stripe", "--port", "0", "--api-key-env", "Q2C_SANDBOX_STRIPE_KEY"],
            workdir,
            {"Q2C_SANDBOX_STRIPE_KEY": key},
        )
        state["stripe"] = {"pid": pid, "base_url": url, "api_key": key}
        _write_state(workdir, state)
    salesforce = state.get("salesforce")
    if not salesforce or not _alive(int(salesforce["pid"])):
        progress("starting the Salesforce emulator")
        ca = workdir / "salesforce-ca.pem"
        callout_secret = secrets.token_hex(16)
        pid, url = _spawn(
            "salesforce",
            ["quote2cash.sandbox.salesforce", "--port", "0", "--ca-out", str(ca)],
            workdir,
            {"Q2C_SF_CALLOUT_SECRET": callout_secret},
        )
        state["salesforce"] = {
            "pid": pid,
            "instance_url": url,
            "ca_file": str(ca),
            "callout_secret": callout_secret,
        }
        _write_state(workdir, state)
    oidc = state.get("oidc")
    if not oidc or not _alive(int(oidc["pid"])):
        progress("starting the OpenID Connect test provider")
        start_oidc_provider(workdir, state)
    if erp == "legacy":
        _stop_tryton(workdir, state)
        _start_legacy_erp(workdir, state, progress)
    else:
        _stop_legacy_erp(workdir, state)
        _start_tryton(workdir, state, tryton_backend, progress)
    progress("seeding the product catalog in Stripe and Salesforce")
    try:
        seed_stripe(state["stripe"]["base_url"], state["stripe"]["api_key"])
        asyncio.run(
            seed_salesforce(state["salesforce"]["instance_url"], state["salesforce"]["ca_file"])
        )
    except Exception as exc:
        raise SandboxError(f"seeding the sandbox catalog failed: {exc}") from exc
    return status(workdir)


def _start_tryton(
    workdir: Path, state: dict[str, Any], backend: str, progress: Callable[[str], None]
) -> None:
    progress("starting the Tryton ERP (first time: builds a template, about 30 s)")
    tryton_dir = workdir / "tryton"
    try:
        tryton = tryton_commands.sandbox_up(tryton_dir, backend=backend)  # type: ignore[arg-type]
    except Exception as exc:
        raise SandboxError(f"Tryton ERP could not start: {exc}") from exc
    state["tryton"] = {
        "workdir": str(tryton_dir),
        "pid": tryton["pid"],
        "base_url": tryton["base_url"],
    }
    _write_state(workdir, state)


def _stop_tryton(workdir: Path, state: dict[str, Any]) -> None:
    if "tryton" in state:
        tryton_commands.sandbox_down(Path(state.pop("tryton")["workdir"]))
        _write_state(workdir, state)


def _start_legacy_erp(
    workdir: Path, state: dict[str, Any], progress: Callable[[str], None]
) -> None:
    """The legacy ERP (its books in ``legacy_erp/``, kept across restarts), batch every second."""
    known = state.get("legacy_erp")
    if known and _alive(int(known["pid"])):
        return
    progress("starting the legacy ERP (SOAP + batch files)")
    data = workdir / "legacy_erp"
    password = known["password"] if known else secrets.token_urlsafe(18)
    args = ["quote2cash.sandbox.legacy_erp", "--data", str(data), "--port", "0"]
    args += ["--batch-seconds", str(LEGACY_BATCH_SECONDS), "--username", LEGACY_USER]
    pid, url = _spawn("legacy_erp", args, workdir, {"Q2C_LEGACY_ERP_PASSWORD": password})
    state["legacy_erp"] = {
        "pid": pid,
        "url": url,
        "username": LEGACY_USER,
        "password": password,
        "drop_folder": str(data / "drop"),
    }
    _write_state(workdir, state)


def _stop_legacy_erp(workdir: Path, state: dict[str, Any]) -> None:
    if "legacy_erp" in state:
        pid = int(state.pop("legacy_erp")["pid"])
        if _alive(pid):
            _terminate(pid)
        _write_state(workdir, state)


def start_oidc_provider(workdir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Start the test OpenID provider (new client secret and user passwords the first time).

    Its issuer, client and users go into ``state["oidc"]`` (the 0600 state file); its own
    folder keeps only hashes and the signing key.
    """
    folder = workdir / "oidc"
    known = state.get("oidc")
    if known and (folder / "clients.json").exists():
        credentials = {
            k: known[k] for k in ("client_id", "client_secret", "redirect_uris", "users")
        }
    else:
        credentials = prepare_provider(folder, default_redirect_uris())
    pid, issuer = _spawn("oidc", ["quote2cash.sandbox.oidc", "--folder", str(folder)], workdir, {})
    state["oidc"] = {"pid": pid, "issuer": issuer, "folder": str(folder), **credentials}
    _write_state(workdir, state)
    described: dict[str, Any] = state["oidc"]
    return described


def status(workdir: Path = DEFAULT_WORKDIR) -> dict[str, Any]:
    """Where each system listens and whether its process is alive; never a credential."""
    state = read_state(workdir) or {}
    out: dict[str, Any] = {}
    if "stripe" in state:
        s = state["stripe"]
        out["billing (Stripe emulator)"] = {"url": s["base_url"], "running": _alive(int(s["pid"]))}
    if "salesforce" in state:
        s = state["salesforce"]
        out["crm (Salesforce emulator)"] = {
            "url": s["instance_url"],
            "running": _alive(int(s["pid"])),
        }
    if "oidc" in state:
        s = state["oidc"]
        out["identity (OpenID Connect provider)"] = {
            "url": s["issuer"],
            "running": _alive(int(s["pid"])),
        }
    tryton = (
        tryton_commands.sandbox_status(Path(state["tryton"]["workdir"]))
        if "tryton" in state
        else None
    )
    if "legacy_erp" in state:
        s = state["legacy_erp"]
        out["erp (legacy ERP)"] = {"url": s["url"], "running": _alive(int(s["pid"]))}
    if tryton is not None:
        out["erp (Tryton)"] = {
            "url": tryton["base_url"],
            "running": tryton["running"],
            "database": tryton["database"],
        }
    return out


def sandbox_credentials(workdir: Path = DEFAULT_WORKDIR) -> dict[str, dict[str, str]]:
    """Per system, its URL and what to sign in with (for a person at the sandbox, on request).

    Systems other helpers add to the state file (an ``url`` and string fields) are listed as
    they are, so a new sandbox system shows up without a change here.
    """
    from quote2cash.sandbox.salesforce import (
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        DEFAULT_PASSWORD,
        DEFAULT_USERNAME,
    )
    from quote2cash.sandbox.tryton import load_endpoint

    state = read_state(workdir) or {}
    out: dict[str, dict[str, str]] = {}
    for name, entry in state.items():
        if not isinstance(entry, dict):
            continue
        if name == "stripe":
            out["billing (Stripe emulator)"] = {
                "url": entry["base_url"],
                "api_key": entry["api_key"],
                "webhooks": "q2c serve registers its endpoint with a fresh signing secret",
            }
        elif name == "salesforce":
            out["crm (Salesforce emulator)"] = {
                "url": entry["instance_url"],
                "username": DEFAULT_USERNAME,
                "password": DEFAULT_PASSWORD,
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "ca_file": entry["ca_file"],
                "callout_secret": entry.get("callout_secret") or "",
            }
        elif name == "tryton":
            endpoint = load_endpoint(entry["workdir"])
            if endpoint is not None:
                out["erp (Tryton)"] = {
                    "url": endpoint.base_url,
                    "database": endpoint.database,
                    "username": endpoint.username,
                    "password": endpoint.password,
                    "admin_username": endpoint.admin_username,
                    "admin_password": endpoint.admin_password,
                }
        else:
            out[name] = {
                key: str(value)
                for key, value in entry.items()
                if key != "pid" and isinstance(value, str | int | float)
            }
    return out


def down(workdir: Path = DEFAULT_WORKDIR) -> list[str]:
    """Stop every sandbox system; returns what was stopped."""
    state = read_state(workdir)
    if state is None:
        return []
    stopped: list[str] = []
    for name in ("stripe", "salesforce", "oidc", "legacy_erp"):
        if name in state and _alive(int(state[name]["pid"])):
            _terminate(int(state[name]["pid"]))
            stopped.append(name)
    if "tryton" in state and tryton_commands.sandbox_down(Path(state["tryton"]["workdir"])):
        stopped.append("tryton")
    _state_path(workdir).unlink(missing_ok=True)
    return stopped
