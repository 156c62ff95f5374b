"""``python -m quote2cash.sandbox.legacy_erp --data DIR --port N``: run the legacy ERP.

The password comes from ``--password-file`` (0600) or ``Q2C_LEGACY_ERP_PASSWORD``, never from
the command line (other users can read that).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from quote2cash.private_files import restrict_process_umask
from quote2cash.sandbox.legacy_erp.server import ServerOptions, serve


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quote2cash.sandbox.legacy_erp")
    parser.add_argument("--data", type=Path, required=True, help="folder of the ERP's books")
    parser.add_argument("--drop", type=Path, help="file-interface folder (default DATA/drop)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--username", default="hub")
    parser.add_argument("--password-file", type=Path)
    parser.add_argument(
        "--batch-seconds", type=float, default=60.0, help="how often the batch runs"
    )
    args = parser.parse_args(argv)
    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").strip()
    else:
        password = os.environ.get("Q2C_LEGACY_ERP_PASSWORD", "")
    if not password:
        parser.error("give --password-file or set Q2C_LEGACY_ERP_PASSWORD")
    if args.batch_seconds <= 0:
        parser.error("--batch-seconds must be positive")
    restrict_process_umask()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)
    serve(
        ServerOptions(
            data=args.data,
            drop=args.drop or args.data / "drop",
            host=args.host,
            port=args.port,
            username=args.username,
            password=password,
            batch_seconds=args.batch_seconds,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
