"""A worker's CPU priority below the web's where both share a host's cores (``Q2C_WORKER_NICE``).

Linux's nice value belongs to each thread, and a thread inherits its creator's: a ``q2c worker``
process raises it for every thread it has and, through them, every thread it starts; in
``q2c serve --workers`` only the worker's store threads take it (the event loop serves the web
too). Raising one's own nice value needs no privilege; where it is refused or unsupported the
priority stays as it was. Nothing changes when the cores are free: nice only orders runnable
threads, so a worker alone on its host runs at full speed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def _lower(tid: int, by: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + by))


def lower_thread_priority(by: int) -> None:
    """The calling thread's nice value raised by ``by`` (0: unchanged)."""
    if by > 0:
        _lower(threading.get_native_id(), by)


def lower_process_priority(by: int) -> None:
    """Every thread of this process raised by ``by`` now (those it starts later inherit it)."""
    if by <= 0:
        return
    try:
        tids = [int(task.name) for task in Path("/proc/self/task").iterdir()]
    except OSError:
        tids = [threading.get_native_id()]
    for tid in tids:
        _lower(tid, by)
