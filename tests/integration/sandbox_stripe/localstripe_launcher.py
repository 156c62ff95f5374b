"""Run localstripe (GPL, third-party) as a separate process for the cross-check test only.

Binds 127.0.0.1 on a free port, prints the port on the first stdout line, keeps its store in
memory (no pickle file) and serves until terminated.
"""

from __future__ import annotations

import socket

from aiohttp import web
from localstripe import resources  # type: ignore[import-untyped]

resources.Store.dump_to_disk = lambda self: None

from localstripe.server import app  # type: ignore[import-untyped]  # noqa: E402


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
