"""Many hub processes on one PostgreSQL store (issue 17): three ``q2c worker`` processes share
the subjects by lease; one is SIGKILLed while events flow. Then nothing is lost, nothing is
booked twice, each subject's bookings keep its order, and the dead worker's subjects resume
on the others within the configured lease (plus a margin for a loaded machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg

from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from support.scaleout_calls import BOOKED, create_tables

Q2C = [sys.executable, "-m", "quote2cash.cli"]
TESTS = Path(__file__).parents[2]
LEASE = 4.0
MARGIN = 10.0
"""Lease expiry is noticed at the survivors' next claim; the margin covers a loaded 2-core box."""
SUBJECTS, PER_SUBJECT = 60, 40


def start_workers(n: int, db: str) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "Q2C_DATABASE_URL": db,
        "Q2C_LOG_LEVEL": "WARNING",
        "Q2C_TEST_STEP_SECONDS": "0.05",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        *Q2C,
        "worker",
        "--handlers",
        "support.scaleout_calls:registry",
        "--lease-seconds",
        str(LEASE),
        "--max-subjects",
        "5",
    ]
    return [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(n)
    ]


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def leases_by_pid(conn: psycopg.Connection) -> dict[int, list[str]]:
    """Subjects with work left, by the pid of the worker leasing them (owner host:pid:nonce)."""
    held: dict[int, list[str]] = defaultdict(list)
    rows = conn.execute(
        "SELECT subject, lease_owner FROM subjects WHERE lease_owner IS NOT NULL "
        "AND lease_until > now() AND pending > 1"
    )
    for subject, owner in rows:
        held[int(owner.split(":")[1])].append(subject)
    return held


def test_killing_one_of_three_workers_loses_and_duplicates_nothing(pg_url: str) -> None:
    rt = Runtime.open(pg_url)
    create_tables(pg_url)
    # Interleaved, as intake would log them: every subject has work for the whole run.
    rt.log.append_many(
        [
            new_event(BOOKED, f"contract:{s}", {"i": i})
            for i in range(PER_SUBJECT)
            for s in range(SUBJECTS)
        ]
    )
    rt.close()
    total = SUBJECTS * PER_SUBJECT
    workers = start_workers(3, pg_url)
    conn = psycopg.connect(pg_url, autocommit=True)
    try:
        victim_pid, orphaned = 0, []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every worker busy, and the victim holds work
            booking = conn.execute("SELECT DISTINCT pid FROM booked").fetchall()
            held = leases_by_pid(conn)
            if len(booking) == 3 and held:
                victim_pid, orphaned = max(held.items(), key=lambda kv: len(kv[1]))
                break
            time.sleep(0.05)
        assert orphaned, "the three workers never all took work"
        victim = next(w for w in workers if w.pid == victim_pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT count(*) FROM event_state WHERE status = 'done'"
            ).fetchone()[0]
            if done == total:
                break
            time.sleep(0.25)
        assert done == total, f"only {done} of {total} events done after the kill"
        resumed = {
            subject: at
            for subject, at in conn.execute(
                "SELECT subject, min(at) FROM booking_attempts WHERE at > %s AND pid <> %s "
                "GROUP BY subject",
                (killed_at, victim_pid),
            )
        }
        booked = conn.execute("SELECT subject, sequence, pid FROM booked ORDER BY n").fetchall()
        attempts = conn.execute("SELECT count(*) FROM booking_attempts").fetchone()[0]
    finally:
        stop(workers)
        conn.close()

    # Nothing lost, nothing booked twice: one booking per event, under its own key.
    assert len(booked) == total
    assert len({(s, q) for s, q, _ in booked}) == total, "an event was booked twice"
    # Per-subject order: each subject's bookings arrive in its sequence.
    order: dict[str, list[int]] = defaultdict(list)
    for subject, sequence, _ in booked:
        order[subject].append(sequence)
    for subject, sequences in order.items():
        assert sequences == sorted(sequences), f"{subject} out of order: {sequences}"
    # The work really spread: every worker booked, and the survivors finished the victim's.
    assert {pid for _, _, pid in booked} >= {w.pid for w in workers}
    # The dead worker's subjects resumed elsewhere within the lease (plus a margin).
    assert set(orphaned) <= set(resumed), f"never resumed: {set(orphaned) - set(resumed)}"
    waits = [(resumed[s] - killed_at).total_seconds() for s in orphaned]
    print(f"orphaned subjects resumed {min(waits):.2f}-{max(waits):.2f} s after the kill")
    assert max(waits) <= LEASE + MARGIN, f"resumed after {max(waits):.1f} s (lease {LEASE} s)"
    assert attempts >= total  # a call cut short by the kill re-ran under its key (or none was)
