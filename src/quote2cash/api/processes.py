"""``q2c serve --processes N``: N serve processes on one port (SO_REUSEPORT: the kernel spreads
connections over them), started and kept by a small parent that serves nothing itself.

The parent migrates the store once, reserves the port (resolving port 0), points the sandbox's
emulators at it once (one Stripe webhook secret for all), starts the processes (spawned, so none
inherits an open store connection), prints ``q2c serving on URL`` when every one listens, starts a
process again if one dies, and on SIGTERM or SIGINT stops them all (each finishes its requests in
flight). The scheduled jobs run in one of them at a time (``serve.schedule`` lease); processes
that keep dying at start make the parent give up."""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from dataclasses import replace
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any, Final

from rich.console import Console

from quote2cash.api.cli import ServeChoice, hook_sandbox_once, sandbox_in_use, serve_one
from quote2cash.cli_text import escape

STARTUP_SECONDS: Final = 120.0
STOP_SECONDS: Final = 30.0
QUICK_DEATH_SECONDS: Final = 10.0
QUICK_DEATHS: Final = 5
"""Processes ending this soon after their start, this many times in a row: the parent gives up
(a broken configuration) instead of restarting them for ever."""
console = Console()


def _child(chosen: ServeChoice, started: ProcessEvent) -> None:
    serve_one(chosen, on_started=started.set)


def _reserve(host: str, port: int) -> socket.socket:
    """Hold the port (bound, not listening, so it takes no connection) while the processes
    start: port 0 is resolved, and no other program takes the port meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


def serve_processes(chosen: ServeChoice, count: int) -> None:
    from quote2cash.cli import fail, open_runtime

    open_runtime(chosen.db).close()  # the store exists and is migrated before any process starts
    try:
        holder = _reserve(chosen.host, chosen.port)
    except OSError as exc:
        fail(f"cannot listen on {chosen.host}:{chosen.port}: {exc.strerror or exc}")
    port = int(holder.getsockname()[1])
    url = f"http://{chosen.host}:{port}"
    shared = replace(chosen, port=port, reuse_port=True, hook_sandbox=False)
    if chosen.hook_sandbox and sandbox_in_use(chosen.config):
        fresh = hook_sandbox_once(chosen, url)
        shared = replace(shared, stripe_secret=fresh, hooked_by_parent=True)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> tuple[SpawnProcess, ProcessEvent]:
        started = context.Event()
        process = context.Process(target=_child, args=(shared, started), name="q2c serve")
        process.start()
        return process, started

    children = [start() for _ in range(count)]
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        for process, started in children:
            while not started.wait(0.2):
                if stopping or not process.is_alive() or time.monotonic() > deadline:
                    fail(f"a serve process did not start (exit code {process.exitcode})")
        holder.close()
        console.print(escape(f"q2c serving on {url} ({count} processes)"), highlight=False)
        started_at = [time.monotonic()] * count
        quick_deaths = 0
        while not stopping:
            time.sleep(0.5)
            for i, (process, _) in enumerate(children):
                if not process.is_alive() and not stopping:
                    lived = time.monotonic() - started_at[i]
                    quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
                    if quick_deaths >= QUICK_DEATHS:
                        fail(
                            f"serve processes keep ending within {QUICK_DEATH_SECONDS:.0f} s of "
                            f"their start (last exit code {process.exitcode}); see their log"
                        )
                    console.print(
                        f"a serve process ended (exit code {process.exitcode}); starting another",
                        highlight=False,
                    )
                    children[i] = start()
                    started_at[i] = time.monotonic()
    finally:
        holder.close()
        for process, _ in children:
            if process.is_alive() and process.pid is not None:
                process.terminate()
        for process, _ in children:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
