"""What ``q2c sandbox up|down|status`` does for the ERP: a detached Tryton server in a workdir.

``up`` leaves the server running and records it in ``<workdir>/sandbox.json`` (mode 0600: it
holds the credentials); the descriptions returned here never contain a password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quote2cash.sandbox.tryton.launcher import (
    DEFAULT_PG_DSN,
    STATE_FILE,
    Backend,
    TrytonSandbox,
    read_state,
    server_alive,
    stop_detached,
)

DEFAULT_WORKDIR = Path(".q2c") / "tryton"


def sandbox_up(
    workdir: Path = DEFAULT_WORKDIR, *, backend: Backend = "sqlite", pg_dsn: str = DEFAULT_PG_DSN
) -> dict[str, Any]:
    """Start a detached sandbox ERP unless one already runs in ``workdir``; describe it."""
    state = read_state(workdir)
    if state is not None and server_alive(state):
        return describe(state, workdir)
    if state is not None:
        stop_detached(workdir)
    TrytonSandbox(workdir, backend=backend, pg_dsn=pg_dsn).start()
    fresh = read_state(workdir)
    if fresh is None:
        raise RuntimeError(f"the sandbox ERP started but left no {STATE_FILE} in {workdir}")
    return describe(fresh, workdir)


def sandbox_down(workdir: Path = DEFAULT_WORKDIR) -> bool:
    """Stop the detached sandbox ERP in ``workdir`` and drop its database; False if none."""
    return stop_detached(workdir)


def sandbox_status(workdir: Path = DEFAULT_WORKDIR) -> dict[str, Any] | None:
    state = read_state(workdir)
    return None if state is None else describe(state, workdir)


def prune_templates(backend: Backend = "sqlite", pg_dsn: str = DEFAULT_PG_DSN) -> list[str]:
    """Remove cached templates left by older trytond/setup versions."""
    sandbox = TrytonSandbox(backend=backend, pg_dsn=pg_dsn)
    try:
        return sandbox.prune_templates()
    finally:
        sandbox.stop()


def describe(state: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The public part of a sandbox's state: where it answers and where its credentials are."""
    return {
        "running": server_alive(state),
        "base_url": state["base_url"],
        "database": state["database"],
        "backend": state["backend"],
        "username": state["username"],
        "credentials_file": str(Path(workdir) / STATE_FILE),
        "pid": state["pid"],
    }
