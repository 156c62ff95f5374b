"""``python -m quote2cash.sandbox.salesforce``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from .emulator import SalesforceEmulator
from .schema import SchemaError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quote2cash.sandbox.salesforce",
        description="Local Salesforce REST API emulator over HTTPS (local CA from trustme).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ca-out", required=True, help="where to write the CA certificate PEM")
    parser.add_argument("--schema", help="custom objects/fields YAML (default: packaged)")
    parser.add_argument("--daily-api-limit", type=int, default=15000)
    parser.add_argument("--session-ttl", type=float, default=7200, help="seconds")
    parser.add_argument("--batch-size", type=int, default=2000, help="query page size")
    parser.add_argument(
        "--callout-url",
        help="Closed Won callout target; the signing secret comes from env Q2C_SF_CALLOUT_SECRET",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    emulator = SalesforceEmulator(
        host=args.host,
        port=args.port,
        schema_path=args.schema,
        ca_out=args.ca_out,
        daily_api_limit=args.daily_api_limit,
        session_ttl_seconds=args.session_ttl,
        query_batch_size=args.batch_size,
        callout_url=args.callout_url,
        callout_secret=os.environ.get("Q2C_SF_CALLOUT_SECRET"),
    )
    await emulator.start()
    print(
        f"salesforce emulator listening on {emulator.instance_url} (CA: {emulator.ca_path})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
