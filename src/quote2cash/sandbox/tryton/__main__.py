"""``python -m quote2cash.sandbox.tryton up|down|status|prune`` (``q2c sandbox`` calls the same)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quote2cash.sandbox.tryton.commands import (
    DEFAULT_WORKDIR,
    prune_templates,
    sandbox_down,
    sandbox_status,
    sandbox_up,
)
from quote2cash.sandbox.tryton.launcher import DEFAULT_PG_DSN, Backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quote2cash.sandbox.tryton")
    parser.add_argument("command", choices=["up", "down", "status", "prune"])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN)
    args = parser.parse_args(argv)
    backend: Backend = "postgresql" if args.backend == "postgresql" else "sqlite"
    if args.command == "up":
        info = sandbox_up(args.workdir, backend=backend, pg_dsn=args.pg_dsn)
    elif args.command == "down":
        stopped = sandbox_down(args.workdir)
        print("stopped" if stopped else f"no sandbox ERP recorded in {args.workdir}")
        return 0
    elif args.command == "prune":
        for location in prune_templates(backend, args.pg_dsn):
            print(f"removed {location}")
        return 0
    else:
        status = sandbox_status(args.workdir)
        if status is None:
            print(f"no sandbox ERP recorded in {args.workdir}")
            return 1
        info = status
    for key, value in info.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
