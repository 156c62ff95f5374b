"""A worker's CPU priority below the web's where both share a host's cores (``Q2C_WORKER_NICE``).

Linux's nice value belongs to each thread, and a thread inherits its creator's: a ``q2c worker``
process raises it for every thread it has and, through them, every thread it starts; in
``q2c serve --workers`` only the worker's store threads take it (the event loop serves the web
too). Raising one's own nice value needs no privilege; where it is refused or unsupported the
priority stays as it was. Nothing changes when the cores are free: nice only orders runnable
threads, so a worker alone on its host runs at full speed.

``Q2C_WORKER_IDLE_CLASS`` goes further for a whole ``q2c worker`` process (on by default for
``q2c serve``'s worker child): Linux's idle scheduling class, which any other thread preempts on
waking (``enter_idle_class``).
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


def _thread_ids() -> list[int]:
    """This process's threads (Linux ``/proc``; elsewhere the calling thread alone)."""
    try:
        return [int(task.name) for task in Path("/proc/self/task").iterdir()]
    except OSError:
        return [threading.get_native_id()]


def lower_process_priority(by: int) -> None:
    """Every thread of this process raised by ``by`` now (those it starts later inherit it)."""
    if by <= 0:
        return
    for tid in _thread_ids():
        _lower(tid, by)


def enter_idle_class() -> bool:
    """Every thread of this process (and those it starts later) in Linux's idle scheduling class
    (``SCHED_IDLE``): a runnable thread of any other class preempts it at once on waking, so a
    worker sharing cores with the web takes only what the web leaves. Needs no privilege; False
    where the platform has no such class or refuses it (the priority is then unchanged).

    Beyond nice 19 (which only weights the share): the web's thread, woken by a request, no
    longer waits for a worker's time slice to end. Measured: `GET /v1/invoices/{id}` p99 beside
    a busy worker 7.8-9.4 ms against 13.3-16.8 (the same worker apart), the worker's rate within
    the run-to-run noise (docs/benchmarks.md)."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        for tid in _thread_ids():
            os.sched_setscheduler(tid, policy, os.sched_param(0))
    except OSError:
        return False
    return True
