"""Files holding the hub's data are the owner's alone (0600), whatever the caller's umask: the
SQLite store with its -wal and -shm files, log files, the sandbox's state and the demo's log."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import quote2cash
from quote2cash.demo.quote_to_cash import _log_to_file
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.private_files import PrivateFileHandler
from quote2cash.sandbox.orchestrator import _write_state


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_sqlite_store_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite"
    runtime = Runtime.open(f"sqlite:///{db}", initialise=True, sqlite_synchronous="NORMAL")
    try:
        runtime.log.append(new_event("crm.opportunity.closed_won", "contract:C-1", {"id": "1"}))
        files = [db, db.with_name("hub.sqlite-wal"), db.with_name("hub.sqlite-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        runtime.close()


def test_a_store_left_world_readable_is_made_private_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    Runtime.open(f"sqlite:///{db}", initialise=True).close()
    os.chmod(db, 0o644)
    Runtime.open(f"sqlite:///{db}").close()
    assert mode(db) == 0o600


def test_log_files_sandbox_state_and_demo_log_are_0600(tmp_path: Path) -> None:
    handler = PrivateFileHandler(tmp_path / "hub.log")
    logger = logging.getLogger("quote2cash.test.file_modes")
    logger.addHandler(handler)
    try:
        logger.warning("written")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert mode(tmp_path / "hub.log") == 0o600

    (tmp_path / "state.json").write_text("{}")
    os.chmod(tmp_path / "state.json", 0o644)
    _write_state(tmp_path, {"stripe": {"api_key": "sk_test_x"}})
    assert mode(tmp_path / "state.json") == 0o600

    with _log_to_file(tmp_path / "demo.log"):
        logging.getLogger("quote2cash.demo").info("hello")
    assert mode(tmp_path / "demo.log") == 0o600


def test_q2c_creates_its_files_0600_under_a_permissive_umask(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(quote2cash.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "quote2cash.cli", "init", "--db", "sqlite:///fresh/hub.sqlite"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "fresh" / "hub.sqlite") == 0o600
    assert mode(tmp_path / "fresh") == 0o700
