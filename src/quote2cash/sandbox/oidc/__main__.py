"""``python -m quote2cash.sandbox.oidc --folder DIR``: serve the test provider until stopped."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from .provider import start_provider


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quote2cash.sandbox.oidc",
        description="Sandbox OpenID Connect provider (127.0.0.1 only).",
    )
    parser.add_argument("--folder", required=True, help="holds users, clients and signing key")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    return parser


async def _serve(folder: Path, host: str, port: int) -> None:
    running = await start_provider(folder, host=host, port=port)
    print(f"oidc provider listening on {running.issuer}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(Path(args.folder), args.host, args.port))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
