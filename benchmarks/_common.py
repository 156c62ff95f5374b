"""Setup the benchmarks share: scratch stores that are created fresh and dropped after, and
measured runs in child processes whose last output line is one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

SRC = Path(__file__).parents[1] / "src"
PG_ADMIN = os.environ.get("Q2C_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_database(prefix: str = "q2c_bench") -> tuple[str, Callable[[], None]]:
    """A new, empty PostgreSQL database and the function that drops it (sessions and all)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}", drop


def store_url(
    backend: str, folder: str, tag: str, prefix: str = "q2c_bench"
) -> tuple[str, Callable[[], None]]:
    """A fresh store of ``backend`` ("sqlite": a file in ``folder``; "postgres": a database)."""
    if backend == "sqlite":
        return f"sqlite:///{folder}/{tag}.sqlite", lambda: None
    return pg_database(prefix)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the project's ``src`` first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def run_child(
    script: str, args: Sequence[str], env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """Run ``script args`` in a new process and return the JSON object on its last line.

    The child is killed if it outlives ``timeout``; a failure raises with the end of its stderr.
    """
    done = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
