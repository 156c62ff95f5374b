"""Start localstripe (GPL-3.0, third-party) as a separate process bound to 127.0.0.1.

It is never imported here: the child runs a small script with ``python -c`` that imports it,
disables its pickle-on-every-write persistence, binds a free loopback port and prints the port.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

_SCRIPT = """
import socket
from aiohttp import web
from localstripe import resources
resources.Store.dump_to_disk = lambda self: None
from localstripe.server import app
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(sock.getsockname()[1], flush=True)
web.run_app(app, sock=sock, print=None, access_log=None)
"""


@dataclass
class LocalstripeProcess:
    """A running localstripe child; ``stop()`` terminates it."""

    process: subprocess.Popen[str]
    base_url: str

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_localstripe(
    python: str = sys.executable, ready_timeout: float = 30
) -> LocalstripeProcess:
    """Launch localstripe and wait until it answers HTTP; raises RuntimeError if it cannot start."""
    process = subprocess.Popen(
        [python, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        process.wait()
        raise RuntimeError("localstripe did not start (is the localstripe package installed?)")
    running = LocalstripeProcess(process, f"http://127.0.0.1:{line}")
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            with urllib.request.urlopen(running.base_url + "/v1/customers", timeout=2):  # noqa: S310
                break
        except urllib.error.HTTPError:
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                running.stop()
                raise RuntimeError("localstripe did not become ready") from None
            time.sleep(0.05)
    return running
