"""Q2C_WORKER_NICE (default 0: as before): a worker's store threads, or a whole `q2c worker`
process (threads it had and threads it starts later), run at a nice value that much higher; and
Q2C_WORKER_IDLE_CLASS: a whole `q2c worker` process in Linux's idle scheduling class."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from pydantic import ValidationError

from quote2cash.engine.recorder import StoreThread
from quote2cash.settings import Settings


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_store_threads_take_the_nice_value_the_loop_keeps_its_own() -> None:
    before = own_nice()
    niced, plain = StoreThread("niced", nice=4), StoreThread("plain")
    try:
        assert await niced.call(own_nice) == min(19, before + 4)
        assert await plain.call(own_nice) == before
        assert own_nice() == before
    finally:
        niced.close()
        plain.close()


def test_a_worker_process_lowers_every_thread_it_has_and_starts() -> None:
    script = """
import os, threading
from quote2cash.engine.niceness import lower_process_priority
def nice():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
base = nice()
seen = {}
ready, go = threading.Event(), threading.Event()
def early():
    ready.set(); go.wait(); seen["early"] = nice()
t = threading.Thread(target=early); t.start(); ready.wait()
lower_process_priority(3)
go.set(); t.join()
late = threading.Thread(target=lambda: seen.__setitem__("late", nice())); late.start(); late.join()
print(base, nice(), seen["early"], seen["late"])
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ
    )
    base, main, early, late = (int(x) for x in out.stdout.split())
    assert main == early == late == min(19, base + 3)


def test_the_default_and_its_bounds() -> None:
    assert Settings.model_fields["worker_nice"].default == 0
    assert Settings(worker_nice=0).worker_nice == 0
    for wrong in (-1, 20):
        with pytest.raises(ValidationError):
            Settings(worker_nice=wrong)


def test_the_idle_class_takes_every_thread_a_process_has_and_starts() -> None:
    script = """
import os, threading
from quote2cash.engine.niceness import enter_idle_class
def policy():
    return os.sched_getscheduler(threading.get_native_id())
base = policy()
seen = {}
ready, go = threading.Event(), threading.Event()
def early():
    ready.set(); go.wait(); seen["early"] = policy()
t = threading.Thread(target=early); t.start(); ready.wait()
entered = enter_idle_class()
go.set(); t.join()
late = threading.Thread(target=lambda: seen.__setitem__("late", policy()))
late.start(); late.join()
print(base, int(entered), policy(), seen["early"], seen["late"])
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ
    )
    base, entered, main, early, late = (int(x) for x in out.stdout.split())
    assert base == os.SCHED_OTHER and entered == 1
    assert main == early == late == os.SCHED_IDLE


def test_the_idle_class_is_unset_by_default() -> None:
    """Unset: the CLI decides (on for serve's worker child, off for a worker of its own)."""
    assert Settings.model_fields["worker_idle_class"].default is None
    assert Settings(worker_idle_class=False).worker_idle_class is False
