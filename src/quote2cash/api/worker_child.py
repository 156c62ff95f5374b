"""``q2c serve``'s worker in a child process (``--worker-mode process``): ``q2c worker`` on serve's
store, systems and config dir, so its store threads never hold the web loop's GIL.

serve supervises the child: ``/health`` reports it running while it lives; one that ends is
started again after a backoff; one that keeps ending soon after its start is given up (``/health``
503, serve checkpoints the audit head itself then). On serve's stop the child gets SIGTERM (it
finishes its batch and checkpoints), then SIGKILL after ``shutdown_seconds``. The store URL (it may
carry a password) reaches the child through its environment, never its argv; the child stops by
itself when serve is gone, even killed hard (``--parent-pid``: it watches its parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from quote2cash.api.app import HubStatus
    from quote2cash.engine.runtime import Runtime

log = logging.getLogger(__name__)

WorkerMode = Literal["process", "loop"]
WORKER_MODES: Final[tuple[str, ...]] = ("auto", "process", "loop")
"""``q2c serve --worker-mode``: ``auto`` (the default) is ``process`` on a PostgreSQL store (the
production shape, DESIGN §6) and ``loop`` on a SQLite file (the embedded shape: workers in
serve's own process)."""

QUICK_DEATH_SECONDS: Final = 10.0
QUICK_DEATHS: Final = 5
"""A child ending within this many seconds of its start, this many times in a row, is given up
(a broken configuration) instead of being started again for ever."""
FIRST_BACKOFF_SECONDS: Final = 0.5
MAX_BACKOFF_SECONDS: Final = 5.0
STDERR: Final = 2
"""The child's output goes to serve's stderr (its log), keeping serve's stdout to its one line."""
PARENT_WATCH_SECONDS: Final = 0.5
"""How often a child worker looks whether its parent (serve) is still there."""


@dataclass(frozen=True)
class WorkerChild:
    """What the child ``q2c worker`` is given besides the store: the systems.yaml (None: the
    sandbox, or ``$Q2C_SYSTEMS_CONFIG``) and the sandbox's folder, as serve was."""

    systems_config: str | None = None
    sandbox: str = ".q2c/sandbox"


def resolve_mode(asked: str, dialect: str) -> WorkerMode:
    """``auto`` made concrete for a store of ``dialect``; ``process`` and ``loop`` as asked."""
    if asked == "loop" or (asked == "auto" and dialect != "postgresql"):
        return "loop"
    return "process"


def worker_command(child: WorkerChild, parent_pid: int) -> list[str]:
    """The child's argv: paths and a pid only (``ps`` shows it), never the store URL."""
    command = [sys.executable, "-m", "quote2cash.cli", "worker", "--workdir", child.sandbox]
    if child.systems_config:
        command += ["--config", child.systems_config]
    return [*command, "--parent-pid", str(parent_pid)]


def store_url_of(runtime: Runtime) -> str:
    """The URL serve's store was opened with, password included (for the child's environment)."""
    return runtime.engine.url.render_as_string(hide_password=False)


def worker_environment(store_url: str, config_dir: Path) -> dict[str, str]:
    """serve's environment with the store and the catalog folder it runs with."""
    return {**os.environ, "Q2C_DATABASE_URL": store_url, "Q2C_CONFIG_DIR": str(config_dir)}


def ended_with(code: int) -> str:
    """An exit code as a log says it: a negative one is the signal that ended the process."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


async def _wait_or_stop(process: asyncio.subprocess.Process, stop: asyncio.Event) -> int | None:
    """The child's exit code when it ends first, None when ``stop`` is set first."""
    ended = asyncio.ensure_future(process.wait())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if ended.done():
        return ended.result()
    ended.cancel()
    return None


async def stop_child(process: asyncio.subprocess.Process, seconds: float) -> int:
    """SIGTERM (the worker finishes its batch), SIGKILL after ``seconds``; the exit code."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), max(seconds, 0.1))
        except TimeoutError:
            log.error(
                "the worker child (pid %d) did not stop in %.0f s: killed", process.pid, seconds
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    return await process.wait()


async def supervise_worker(
    runtime: Runtime,
    child: WorkerChild,
    config_dir: Path,
    stop: asyncio.Event,
    status: HubStatus,
    shutdown_seconds: float,
) -> None:
    """Keep one child worker running until ``stop``; ``status`` says whether it runs. The audit
    head stays checkpointed as with serve's own worker: by the child while it runs (and on its way
    out), by serve when the child was given up or did not end cleanly."""
    from quote2cash.engine.checkpoints import Checkpointer, checkpoint_forever

    command = worker_command(child, os.getpid())
    env = worker_environment(store_url_of(runtime), config_dir)
    quick_deaths = 0
    process: asyncio.subprocess.Process | None = None
    clean = False
    try:
        while not stop.is_set():
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=STDERR,
                start_new_session=True,  # a terminal's Ctrl-C reaches serve, which stops it
            )
            status.worker_running = True
            log.info("the worker child (pid %d) started", process.pid)
            code = await _wait_or_stop(process, stop)
            if code is None:
                break
            status.worker_running = False
            lived = time.monotonic() - started
            quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
            if quick_deaths >= QUICK_DEATHS:
                log.error(
                    "the worker child keeps ending within %.0f s of its start (%d times, last %s): "
                    "given up, no worker runs here; see its log above",
                    QUICK_DEATH_SECONDS,
                    quick_deaths,
                    ended_with(code),
                )
                process = None
                await checkpoint_forever(runtime, stop)
                clean = True
                return
            backoff = min(
                MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** max(0, quick_deaths - 1)
            )
            log.error(
                "the worker child (pid %d) ended (%s) after %.1f s; starting another in %.1f s",
                process.pid,
                ended_with(code),
                lived,
                backoff,
            )
            process = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
    except Exception as exc:  # e.g. the interpreter cannot be started: no worker, say so
        log.error("the worker child could not be started: %s", type(exc).__name__, exc_info=True)
        if process is not None:
            await stop_child(process, shutdown_seconds)
            process = None
        status.worker_running = False
        await checkpoint_forever(runtime, stop)
        clean = True
    finally:
        if process is not None:
            code = await asyncio.shield(stop_child(process, shutdown_seconds))
            clean = code == 0
        status.worker_running = False
        if not clean:  # decisions audited since the child's last checkpoint are sealed here
            await Checkpointer(runtime).tick(force=True)


async def stop_when_parent_ends(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once this process's parent is no longer ``parent_pid`` (it ended, even killed
    hard: the child is adopted by another), so serve's worker child never outlives serve."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("the parent process %d is gone: this worker stops", parent_pid)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PARENT_WATCH_SECONDS)
