"""One lifecycle world per test session: the sandbox systems and ``q2c serve`` in a subprocess."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from conftest import missing_service
from lifecycle.world import LifecycleWorld, lifecycle_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LifecycleWorld]:
    if shutil.which("trytond") is None:
        try:
            import trytond  # noqa: F401
        except ImportError:
            missing_service("Tryton (trytond) is not installed")
    from quote2cash.demo.sandbox import DemoSetupError
    from quote2cash.sandbox.orchestrator import SandboxError

    folder = tmp_path_factory.mktemp("lifecycles")
    try:
        context = lifecycle_world(folder)
        running = context.__enter__()
    except (SandboxError, DemoSetupError) as exc:
        missing_service(f"the sandbox could not start: {exc}")
        raise
    try:
        yield running
    finally:
        context.__exit__(None, None, None)
