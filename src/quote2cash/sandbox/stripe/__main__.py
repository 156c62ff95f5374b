"""``python -m quote2cash.sandbox.stripe --port N``: run the Stripe emulator as a process."""

from __future__ import annotations

import argparse
import os

from .app import run_forever


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Stripe API emulator (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0 picks a free one)")
    parser.add_argument(
        "--api-key-env",
        default=None,
        help="environment variable holding the only accepted API key (default: any sk_test_ key)",
    )
    args = parser.parse_args()
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    run_forever(args.port, key)


if __name__ == "__main__":
    main()
