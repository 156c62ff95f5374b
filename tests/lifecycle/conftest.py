"""One lifecycle world per test session: the sandbox systems and ``q2c serve`` in a subprocess."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import missing_service
from lifecycle.space import ERPS, SPACE
from lifecycle.world import LifecycleWorld, lifecycle_world


@pytest.fixture(scope="session", params=ERPS)
def world(request: pytest.FixtureRequest) -> Iterator[LifecycleWorld]:
    """The world lives in a folder of its own, not pytest's numbered temp folders: on a shared
    machine another session's pytest prunes those while a long set still runs. Kept afterwards
    when ``Q2C_LIFECYCLE_KEEP=1`` (the hub's store and the serve log, to look into a failure)."""
    erp: str = request.param
    if erp == "tryton" and shutil.which("trytond") is None:
        try:
            import trytond  # noqa: F401
        except ImportError:
            missing_service("Tryton (trytond) is not installed")
    from quote2cash.demo.sandbox import DemoSetupError
    from quote2cash.sandbox.orchestrator import SandboxError

    folder = Path(tempfile.mkdtemp(prefix="q2c-lifecycles-"))
    try:
        collection = "charge_automatically" if SPACE.charge_automatically else "send_invoice"
        context = lifecycle_world(folder, collection, taxed=SPACE.taxed, erp=erp)
        running = context.__enter__()
    except (SandboxError, DemoSetupError) as exc:
        missing_service(f"the sandbox could not start: {exc}")
        raise
    try:
        yield running
    finally:
        context.__exit__(None, None, None)
        if not os.environ.get("Q2C_LIFECYCLE_KEEP"):
            shutil.rmtree(folder, ignore_errors=True)
