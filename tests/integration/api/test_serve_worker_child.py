"""``q2c serve``'s worker in a child process (``--worker-mode process``, the default on
PostgreSQL): a real ``q2c serve`` of this checkout, its child a real ``q2c worker`` found in the
process tree (``/proc``). The child handles what is logged; one that is killed is started
again; one that cannot start is given up (``/health`` 503); serve's SIGTERM stops it, and a serve
killed hard leaves none behind. The store URL (a password in it) never shows in a child's argv."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from quote2cash.engine.audit import read_head
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.identity.accounts import create_first_admin

from .conftest import eventually, logged
from .serve_process import Serve, start_serve, stop
from .serve_process import serve_env as base_env

PASSWORD = "pw-never-in-argv-7c1e"
"""Put into the PostgreSQL URL (the server trusts local connections, so any password does)."""


def serve_env() -> dict[str, str]:
    return base_env(Q2C_AUDIT_CHECKPOINT_SECONDS="0.5")


def start(db: str, folder: Path, *extra: str, env: dict[str, str] | None = None) -> Serve:
    return start_serve(db, folder, *extra, env={**serve_env(), **(env or {})})


def children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            found.update(int(x) for x in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace").split("\0")
    except FileNotFoundError:
        return []


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for a parent that is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def worker_children(pid: int) -> set[int]:
    return {c for c in children(pid) if "worker" in cmdline(c) and running(c)}


def wait_for(probe: Any, within: float = 60.0) -> Any:
    """Poll ``probe`` until it returns something true (or the deadline passes: the last value)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def one_worker(serve: Serve, other_than: set[int] | None = None) -> int:
    found = wait_for(lambda: worker_children(serve.process.pid) - (other_than or set()))
    assert len(found) == 1, (found, serve.text()[-2000:])
    return int(next(iter(found)))


async def health(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as answer:
        return answer.status, await answer.json()


def append_billing_event(db: str, ident: str) -> str:
    """A billing event the flows keep in order and mark done, whatever systems are configured."""
    runtime = Runtime.open(db)
    try:
        event = new_event(
            "billing.customer.created", f"billing:{ident}", {"id": ident}, source="billing"
        )
        runtime.log.append(event)
        return event.id
    finally:
        runtime.close()


async def handled(db: str, event_id: str) -> str | None:
    runtime = Runtime.open(db)
    try:
        rows = await eventually(
            lambda: asyncio.to_thread(logged, runtime, event_id=event_id),
            lambda rs: bool(rs) and rs[0].status == "done",
            within=60,
        )
        return rows[0].status if rows else None
    finally:
        runtime.close()


def audit_decision(db: str) -> None:
    """An audited change made beside serve (its API's decisions are audited the same way)."""
    runtime = Runtime.open(db)
    try:
        create_first_admin(runtime, "admin")
    finally:
        runtime.close()


async def checkpointed_seq(db: str) -> int:
    """The audit seq of the store's last signed checkpoint outside it (-1: none)."""
    runtime = Runtime.open(db)
    try:
        with runtime.engine.connect() as conn:
            head = read_head(conn)
        assert head is not None and head.store_id is not None
        checkpoint = await runtime.checkpoints.latest(head.store_id)
        return -1 if checkpoint is None else checkpoint.seq
    finally:
        runtime.close()


async def checkpoint_after(db: str, change: Any) -> bool:
    """Whether a checkpoint newer than the last one comes after ``change`` (within a minute)."""
    before = await checkpointed_seq(db)
    await asyncio.to_thread(change)
    after = await eventually(lambda: checkpointed_seq(db), lambda seq: seq > before, within=60)
    return after > before


@pytest.fixture
def store(db_url: str) -> Iterator[str]:
    """The store's URL, initialised; on PostgreSQL with a password in it."""
    url = db_url
    if url.startswith("postgresql"):
        url = make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)
    Runtime.open(url).close()
    yield url


async def test_serve_runs_its_worker_in_a_child_it_restarts_and_stops(
    store: str, tmp_path: Path
) -> None:
    serve = start(store, tmp_path, "--worker-mode", "process")
    try:
        first = one_worker(serve)
        assert first != serve.process.pid
        argv = cmdline(first)
        assert argv[1:4] == ["-m", "quote2cash.cli", "worker"], argv
        assert store not in " ".join(argv) and PASSWORD not in " ".join(argv)
        status, body = await health(serve.url)
        assert status == 200 and body["worker"] == {"enabled": True, "running": True}
        assert await handled(store, append_billing_event(store, "cus_child_1")) == "done"
        # serve's cores go to the web first: the child is in the idle scheduling class
        assert os.sched_getscheduler(first) == os.SCHED_IDLE
        assert os.sched_getscheduler(serve.process.pid) == os.SCHED_OTHER
        assert await checkpoint_after(store, partial(audit_decision, store))  # by the child

        os.kill(first, signal.SIGKILL)
        second = one_worker(serve, other_than={first})
        assert not running(first)
        status, body = await eventually(lambda: health(serve.url), lambda h: h[0] == 200)
        assert body["worker"] == {"enabled": True, "running": True}
        assert await handled(store, append_billing_event(store, "cus_child_2")) == "done"
        assert any("killed by SIGKILL" in m for m in serve.messages()), serve.text()[-2000:]
        everyone = {first, second}
    finally:
        code = stop(serve)
    assert code == 0, serve.text()[-2000:]
    assert not any(running(pid) for pid in everyone)  # the child ended with serve
    assert PASSWORD not in serve.text()


async def test_the_default_is_a_child_on_postgresql_and_serves_loop_on_sqlite(
    store: str, tmp_path: Path
) -> None:
    """``--worker-mode auto``: the production shape (PostgreSQL) runs its worker apart, the
    embedded one (a SQLite file) in serve's own process (DESIGN §6)."""
    serve = start(store, tmp_path)
    try:
        assert await handled(store, append_billing_event(store, "cus_auto_1")) == "done"
        status, body = await health(serve.url)
        assert status == 200 and body["worker"] == {"enabled": True, "running": True}
        if store.startswith("postgresql"):
            assert one_worker(serve) != serve.process.pid
        else:
            assert worker_children(serve.process.pid) == set()
    finally:
        assert stop(serve) == 0


async def test_the_child_keeps_the_normal_class_when_told(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    serve = start(db, tmp_path, "--worker-mode", "process", env={"Q2C_WORKER_IDLE_CLASS": "false"})
    try:
        child = one_worker(serve)
        assert await handled(db, append_billing_event(db, "cus_normal_1")) == "done"
        assert os.sched_getscheduler(child) == os.SCHED_OTHER
    finally:
        assert stop(serve) == 0


async def test_a_serve_killed_hard_leaves_no_worker_behind(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    serve = start(db, tmp_path, "--worker-mode", "process")
    try:
        child = one_worker(serve)
        serve.process.kill()  # SIGKILL: serve cannot stop its child itself
        serve.process.wait()
        gone = wait_for(lambda: not running(child))
        assert gone, serve.text()[-2000:]
        assert any("parent process" in m and "is gone" in m for m in serve.messages())
    finally:
        stop(serve)


async def test_a_worker_child_that_cannot_start_is_given_up(tmp_path: Path) -> None:
    """No catalog for the flows: each child ends at once; after five quick ends serve gives up,
    says so, and ``/health`` answers 503 while the API keeps serving."""
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    serve = start(
        db, tmp_path, "--worker-mode", "process", "--config-dir", str(tmp_path / "missing")
    )
    try:
        given_up = wait_for(lambda: any("given up" in m for m in serve.messages()), within=120)
        assert given_up, serve.text()[-3000:]
        ends = [m for m in serve.messages() if "the worker child (pid" in m and "ended" in m]
        assert len(ends) == 4 and all("exit code 2" in m for m in ends), ends
        status, body = await health(serve.url)
        assert status == 503 and body["worker"] == {"enabled": True, "running": False}
        assert body["store"] == {"reachable": True}
        assert worker_children(serve.process.pid) == set()
        assert await checkpoint_after(db, partial(audit_decision, db))  # by serve itself now
    finally:
        code = stop(serve)
    assert code == 0


async def test_worker_mode_loop_runs_the_worker_on_serves_own_loop(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    serve = start(db, tmp_path, "--worker-mode", "loop")
    try:
        assert await handled(db, append_billing_event(db, "cus_loop_1")) == "done"
        status, body = await health(serve.url)
        assert status == 200 and body["worker"] == {"enabled": True, "running": True}
        assert worker_children(serve.process.pid) == set()  # handled in serve itself
    finally:
        assert stop(serve) == 0


async def test_each_of_processes_supervises_its_own_worker_child(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    serve = start(db, tmp_path, "--worker-mode", "process", "--processes", "2")
    try:
        served = wait_for(
            lambda: {c for c in children(serve.process.pid) if "spawn_main" in " ".join(cmdline(c))}
        )
        assert len(served) == 2
        workers = wait_for(
            lambda: (
                all(len(worker_children(s)) == 1 for s in served)
                and set().union(*(worker_children(s) for s in served))
            )
        )
        assert len(workers) == 2, serve.text()[-2000:]
        assert await handled(db, append_billing_event(db, "cus_procs_1")) == "done"
    finally:
        assert stop(serve) == 0
    assert not any(running(pid) for pid in workers | served)


def test_an_unknown_worker_mode_is_one_clear_error(tmp_path: Path) -> None:
    env = {**serve_env(), "Q2C_SERVE_WORKER_MODE": "threads"}
    done = subprocess.run(
        [sys.executable, "-m", "quote2cash.cli", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--worker-mode is 'threads'; expected auto, process, loop" in done.stderr
