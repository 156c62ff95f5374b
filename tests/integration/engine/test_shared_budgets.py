"""Budgets hold across hub processes (issue 17): three ``q2c worker`` processes on one
PostgreSQL store share a Stripe budget; the Stripe emulator counts every call it receives.

* no second carries more than rate + burst calls, the emulator refuses none, and together the
  processes use >= 95 % of the rate while work waits;
* a 429 with Retry-After stops every process, not only the one that got it;
* a day allocation, once spent, holds the remaining work (pending, never failed);
* a killed process's concurrency slots come back within their lease, and a call held before it
  starts gives its slot back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from quote2cash.engine.budgets import LEASE_GRACE_SECONDS, Budget
from quote2cash.engine.errors import SystemUnavailable, TransientError
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.store.db import open_engine
from quote2cash.store.schema import budget_slots, event_state, subjects
from support.budget_calls import BILLING_CALL, ERP_CALL
from support.load import load_factor

Q2C = [sys.executable, "-m", "quote2cash.cli"]
TESTS = Path(__file__).parents[2]
RATE, BURST = 20, 4
SYSTEM_BURST = 2 * BURST
"""Stripe's own bucket (the emulator's) has the budget's rate and a larger burst: the gap absorbs
the jitter between a token's time in the hub and the call's arrival (docs/engine.md)."""


@pytest.fixture
def stripe_emulator() -> Iterator[str]:
    """The Stripe emulator in a process of its own, so the test's polling cannot delay it."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "quote2cash.sandbox.stripe", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def configure(url: str, **values: Any) -> None:
    answer = requests.post(f"{url}/_emulator/config", json=values, timeout=10)
    assert answer.status_code == 200, answer.text


def systems_yaml(tmp_path: Path, budgets: str) -> Path:
    path = tmp_path / "systems.yaml"
    path.write_text(budgets, encoding="utf-8")
    return path


def start_workers(
    n: int, db: str, config: Path, env: dict[str, str]
) -> list[subprocess.Popen[str]]:
    full = {
        **os.environ,
        **env,
        "Q2C_DATABASE_URL": db,
        "Q2C_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return [
        subprocess.Popen(
            [
                *Q2C,
                "worker",
                "--handlers",
                "support.budget_calls:registry",
                "--config",
                str(config),
            ],
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # a full pipe nobody reads would stall the worker
            text=True,
        )
        for _ in range(n)
    ]


def stop(workers: list[subprocess.Popen[str]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def usage(url: str) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"{url}/_emulator/usage", timeout=10).json()
    return answer


def wait_for(condition: Any, timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def statuses(db: str) -> dict[str, int]:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(event_state.c.status, func.count()).group_by(event_state.c.status)
            )
            return {status: int(n) for status, n in rows}
    finally:
        engine.dispose()


def append_billing_calls(db: str, n: int, subjects: int) -> None:
    rt = Runtime.open(db)
    rt.log.append_many(
        [new_event(BILLING_CALL, f"contract:{i % subjects}", {"i": i}) for i in range(n)]
    )
    rt.close()


def test_three_processes_share_one_rate_and_use_it(
    pg_url: str, tmp_path: Path, stripe_emulator: str
) -> None:
    url = stripe_emulator
    configure(url, rate_limit_per_second=RATE, rate_limit_burst=SYSTEM_BURST)
    n = RATE * 12
    append_billing_calls(pg_url, n, subjects=n // 2)
    config = systems_yaml(
        tmp_path, f"billing:\n  budgets:\n    writes: {{rate: {RATE}, burst: {BURST}}}\n"
    )
    workers = start_workers(3, pg_url, config, {"Q2C_TEST_STRIPE_URL": url})
    try:
        done = wait_for(lambda: statuses(pg_url).get("done") == n, 60, every=1.0)
    finally:
        stop(workers)
    seen = usage(url)
    assert done, f"only {seen['requests']} of {n} calls in 60 s"
    assert seen["rate_limited"] == 0, f"the emulator refused {seen['rate_limited']} calls"
    per_second = {int(k): v for k, v in seen["per_second"].items()}
    # the hub's guarantee: burst + rate x (1 s + the lease grace) in any one second
    assert max(per_second.values()) <= BURST + RATE * (1 + LEASE_GRACE_SECONDS), per_second
    seconds = sorted(per_second)
    full = seconds[1:-1]  # the first and last second are partial
    used = sum(per_second[s] for s in full) / (len(full) * RATE)
    assert used >= 0.95, f"budget utilisation {used:.3f} while work waited: {per_second}"
    assert statuses(pg_url) == {"done": n}


def test_a_429_with_retry_after_stops_every_process(
    pg_url: str, tmp_path: Path, stripe_emulator: str
) -> None:
    url = stripe_emulator
    configure(url, retry_after_seconds=3)
    append_billing_calls(pg_url, 400, subjects=200)
    config = systems_yaml(tmp_path, f"billing:\n  budgets:\n    writes: {{rate: {RATE}}}\n")
    workers = start_workers(3, pg_url, config, {"Q2C_TEST_STRIPE_URL": url})
    try:
        assert wait_for(lambda: usage(url)["requests"] >= 40, 60), "no calls reached Stripe"
        configure(url, fail_next_429=1)
        assert wait_for(lambda: usage(url)["rate_limited"] == 1, 30), "no 429 was answered"
        time.sleep(4)
    finally:
        stop(workers)
    seen = usage(url)
    limited = seen["limited_at"][0]
    during = [t for t in seen["accepted_at"] if limited + 0.3 < t < limited + 2.9]
    assert during == [], f"{len(during)} calls reached Stripe while it asked every caller to wait"
    after = [t for t in seen["accepted_at"] if t >= limited + 2.9]
    assert after, "calls did not resume after Retry-After"


def test_a_spent_day_allocation_holds_work_without_failing_it(
    pg_url: str, tmp_path: Path, stripe_emulator: str
) -> None:
    url = stripe_emulator
    allocation = 45
    append_billing_calls(pg_url, 120, subjects=60)
    config = systems_yaml(
        tmp_path, f"billing:\n  budgets:\n    day: {{per_day: {allocation}, rate: 50}}\n"
    )
    workers = start_workers(3, pg_url, config, {"Q2C_TEST_STRIPE_URL": url})
    try:
        assert wait_for(lambda: usage(url)["requests"] >= allocation, 60), (
            usage(url)["requests"],
            statuses(pg_url),
        )
        time.sleep(3)  # time enough to overspend, were the allocation not shared
    finally:
        stop(workers)
    assert usage(url)["requests"] == allocation
    assert statuses(pg_url) == {"done": allocation, "pending": 120 - allocation}
    rt = Runtime.open(pg_url, initialise=False)
    try:
        with rt.engine.connect() as conn:
            attempts = conn.execute(select(func.max(event_state.c.attempts))).scalar_one()
    finally:
        rt.close()
    assert attempts == 0, "held work must not spend attempts"


class Recorder:
    """A stand-in ERP: records when each call arrived."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.lock = threading.Lock()


@pytest.fixture
def erp() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            with recorder.lock:
                recorder.starts.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    server.shutdown()


def test_a_killed_process_frees_its_concurrency_slots_within_the_lease(
    pg_url: str, tmp_path: Path, erp: tuple[str, Recorder]
) -> None:
    url, recorder = erp
    lease = 5.0
    config = systems_yaml(
        tmp_path,
        f"erp:\n  budgets:\n    posting: {{concurrency: 2, slot_lease_seconds: {lease}}}\n",
    )
    rt = Runtime.open(pg_url)
    rt.log.append_many([new_event(ERP_CALL, f"invoice:{i}", {"i": i}) for i in range(2)])
    [holder] = start_workers(1, pg_url, config, {"Q2C_TEST_ERP_URL": url, "Q2C_TEST_ERP_HOLD": "1"})

    def held() -> int:
        with rt.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(budget_slots.c.holder.is_not(None))
                ).scalar_one()
            )

    def waiting_for_slots() -> bool:
        """The other workers hold the new subjects: their calls wait for a slot."""
        with rt.engine.connect() as conn:
            owners = conn.execute(
                select(func.count(subjects.c.lease_owner.distinct())).where(
                    subjects.c.subject.in_([f"invoice:{i}" for i in range(2, 8)])
                )
            ).scalar_one()
        return int(owners) >= 1

    def expiry() -> float:
        """When the held slots' leases run out, as this process's monotonic time."""
        with rt.engine.connect() as conn:
            left = conn.exec_driver_sql(
                "SELECT EXTRACT(EPOCH FROM min(expires_at) - clock_timestamp()) "
                "FROM budget_slots WHERE holder IS NOT NULL"
            ).scalar_one()
        return time.monotonic() + float(left)

    try:
        assert wait_for(lambda: held() == 2, 30), "the first worker never held both slots"
        rt.log.append_many([new_event(ERP_CALL, f"invoice:{i}", {"i": i}) for i in range(2, 8)])
        others = start_workers(2, pg_url, config, {"Q2C_TEST_ERP_URL": url})
        try:
            assert wait_for(waiting_for_slots, 30), "the other workers never claimed work"
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            expires = expiry()
            # the six new subjects' calls (the dead worker's own two follow its subject leases)
            assert wait_for(lambda: len(recorder.starts) >= 6, 30), len(recorder.starts)
        finally:
            stop(others)
    finally:
        if holder.poll() is None:
            holder.kill()
        rt.close()
    first = min(recorder.starts)
    assert first >= expires - 0.05, "a call started while the dead process's slots were leased"
    # within a second of the lease on a quiet machine; stretched by the load, as the lifecycle
    # harness's bounds are (CI failed this at load 8-10 on 2 cores: 3.3 s)
    bound = 1.0 * load_factor()
    assert first <= expires + bound, (
        f"slots came back {first - expires:.1f} s after their lease (bound {bound:.1f} s)"
    )


def test_a_call_held_by_its_day_allocation_gives_its_slot_back(pg_url: str) -> None:
    rt = Runtime.open(pg_url)
    budget = Budget("erp", "posting", per_day=1, concurrency=1)
    rt.gates.configure_budgets([budget])

    def holders() -> list[str | None]:
        with rt.engine.connect() as conn:
            return list(conn.execute(select(budget_slots.c.holder)).scalars())

    async def run() -> None:
        gate = rt.gates.enter("erp", "erp.post_invoice") or await rt.gates.enter_waiting(
            "erp", "erp.post_invoice"
        )
        assert holders() == [rt.gates.holder]
        rt.gates.leave(gate, None, 0.0)
        with pytest.raises(SystemUnavailable, match="daily allocation of 1 used"):
            await rt.gates.enter_waiting("erp", "erp.post_invoice")
        await asyncio.sleep(0.2)  # the slot goes back off the event loop

    try:
        asyncio.run(run())
        assert holders() == [None]
    finally:
        rt.close()


def test_a_bad_budget_stops_the_worker_with_one_line_naming_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    Runtime.open(db).close()
    config = systems_yaml(tmp_path, "billing:\n  budgets:\n    writes: {rate: 0}\n")
    handlers = "support.budget_calls:registry"
    ran = subprocess.run(
        [*Q2C, "worker", "--once", "--handlers", handlers, "--config", str(config)],
        env={
            **os.environ,
            "Q2C_DATABASE_URL": db,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 2
    assert "billing.budgets.writes.rate: expected a number > 0, got 0" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_systems_budgets_shows_the_shared_state_as_json(pg_url: str) -> None:
    rt = Runtime.open(pg_url)
    budget = Budget("billing", "writes", rate=5, burst=2, per_day=100, concurrency=3)
    rt.gates.configure_budgets([budget])

    async def one_call() -> None:
        gate = await rt.gates.enter_waiting("billing", "billing.pay")
        rt.gates.leave(gate, TransientError("429", retry_after=60, throttled=True), 0.0)
        await asyncio.sleep(0.3)  # the hold is written off the event loop

    try:
        asyncio.run(one_call())
    finally:
        rt.close()
    shown = subprocess.run(
        [*Q2C, "systems", "budgets", "--format", "json"],
        env={**os.environ, "Q2C_DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    [row] = json.loads(shown.stdout)
    assert (row["budget"], row["day_used"], row["slots"]) == ("billing:writes", 1, 3)
    assert row["blocked_until"] is not None and row["slots_held"] == 0
