"""A pause takes effect in every hub process within its stated bound: after
``q2c systems pause erp`` returns, no ERP call starts in a separately running worker; after
``q2c systems resume erp`` calls start again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from support.gated_calls import CALL
from support.identity import first_admin, new_operator, token_of

Q2C = [sys.executable, "-m", "quote2cash.cli"]
TESTS = Path(__file__).parents[2]
BOUND = 1.0


class Recorder:
    """A stand-in ERP endpoint: records when each call reached it, answers after 20 ms."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.lock = threading.Lock()

    def after(self, moment: float) -> list[float]:
        with self.lock:
            return [t for t in self.starts if t > moment]


@pytest.fixture
def erp() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            with recorder.lock:
                recorder.starts.append(time.monotonic())
            time.sleep(0.02)
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


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_pause_holds_every_worker_within_the_bound_and_resume_resumes(
    tmp_path: Path, erp: tuple[str, Recorder]
) -> None:
    url, recorder = erp
    db = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    rt = Runtime.open(db)
    rt.log.append_many([new_event(CALL, f"contract:{i % 40}", {"i": i}) for i in range(3000)])
    ops = new_operator(rt, first_admin(rt), "ops", "operator")
    token = token_of(rt, ops)
    rt.close()
    env = {
        **os.environ,
        "Q2C_TOKEN": token,
        "Q2C_DATABASE_URL": db,
        "Q2C_TEST_ERP_URL": url,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    worker = subprocess.Popen(
        [*Q2C, "worker", "--handlers", "support.gated_calls:registry"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: len(recorder.starts) >= 50, 30), "the worker made no ERP calls"
        paused = subprocess.run(
            [*Q2C, "systems", "pause", "erp", "--reason", "month-end close"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        returned = time.monotonic()
        assert paused.returncode == 0, paused.stderr
        assert "no call to it starts from now on" in paused.stdout
        time.sleep(2.5)
        late = recorder.after(returned + BOUND)
        assert late == [], f"{len(late)} ERP calls started more than {BOUND} s after the pause"
        assert recorder.after(returned) == []  # in fact none after the command returned
        held = len(recorder.starts)
        assert held < 3000, "the stream ended before the pause could be observed"

        resumed = subprocess.run(
            [*Q2C, "systems", "resume", "erp"], env=env, capture_output=True, text=True, timeout=60
        )
        assert resumed.returncode == 0, resumed.stderr
        assert wait_for(lambda: len(recorder.starts) > held + 20, 10), "calls did not resume"
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err[-2000:]
