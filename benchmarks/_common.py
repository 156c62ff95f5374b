"""Setup the benchmarks share: scratch stores that are created fresh and dropped after, measured
runs in child processes whose last output line is one JSON object, and a ``q2c serve`` to load."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

SRC = Path(__file__).parents[1] / "src"
PG_ADMIN = os.environ.get("Q2C_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_database(
    prefix: str = "q2c_bench", *, template: str | None = None
) -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database (empty, or a file copy of ``template``) and the function that
    drops it (sessions and all)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}", drop


def pg_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


def pg_rename(old: str, new: str, *, replace: bool = False) -> None:
    """Rename database ``old`` to ``new`` (dropping an existing ``new`` first if ``replace``):
    a database appears under its final name only once it is complete."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        if replace:
            conn.execute(f'DROP DATABASE IF EXISTS "{new}" WITH (FORCE)')
        conn.execute(f'ALTER DATABASE "{old}" RENAME TO "{new}"')


def schema_head() -> str:
    """The store's migration head: a database built for one schema is not reused by another."""
    from alembic.script import ScriptDirectory

    migrations = SRC / "quote2cash" / "store" / "migrations"  # this checkout's, as the children
    return str(ScriptDirectory(str(migrations)).get_current_head())


def store_url(
    backend: str, folder: str, tag: str, prefix: str = "q2c_bench"
) -> tuple[str, Callable[[], None]]:
    """A fresh store of ``backend`` ("sqlite": a file in ``folder``; "postgres": a database)."""
    if backend == "sqlite":
        return f"sqlite:///{folder}/{tag}.sqlite", lambda: None
    return pg_database(prefix)


def backend_cpu_seconds(url: str) -> float:
    """CPU seconds (user + system) spent so far by the PostgreSQL backends serving ``url``'s
    database, read from /proc: robust to a shared machine's load, unlike a wall-clock rate."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            )
        ]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a backend that ended meanwhile
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pg_blocks_read(url: str) -> int:
    """Blocks ``url``'s database has read from outside PostgreSQL's shared buffers so far (its
    ``pg_stat_database.blks_read``): index and table pages a workload did not find cached.
    Backends publish their counts when they exit (or every second or so), so dispose of a
    pool's connections before reading the figure that ends a measurement."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT blks_read FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


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


def start_serve(
    url: str,
    folder: Path,
    *,
    workers: bool = False,
    console: bool = False,
    processes: int = 1,
    worker_mode: str | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """``q2c serve`` of this checkout on ``url`` (no polling, an empty sandbox state), its log in
    ``folder/serve.log``; returns the process and the address it serves on. ``processes`` > 1:
    ``q2c serve --processes N`` (the process returned is their parent). ``worker_mode``: serve's
    ``--worker-mode`` (None: its default, ``auto``)."""
    sandbox = folder / "sandbox"
    sandbox.mkdir(exist_ok=True)
    (sandbox / "state.json").write_text("{}", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["Q2C_LOG_LEVEL"] = "WARNING"
    command = [sys.executable, "-c", "from quote2cash.cli import main; main()", "serve"]
    command += ["--db", url, "--port", "0", "--poll-seconds", "0"]
    command += ["--workers" if workers else "--no-workers"]
    command += ["--worker-mode", worker_mode] if workers and worker_mode else []
    command += [] if console else ["--no-console"]
    command += ["--processes", str(processes)] if processes > 1 else []
    command += ["--workdir", str(sandbox), "--no-hook-sandbox"]
    from quote2cash.private_files import open_private

    with open_private(folder / "serve.log", "a") as log:  # the hub's log: 0600 like its data
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=folder
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"serving on (http://\S+)", line)
    if found is None:
        process.kill()
        raise SystemExit(f"q2c serve did not start: {(folder / 'serve.log').read_text()[-2000:]}")
    return process, found.group(1)


def stop_serve(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
