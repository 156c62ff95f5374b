"""``q2c customers match``: the data steward's batch run over an account export (experience layer:
the matching itself is masterdata's)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from quote2cash.cli_text import FormatOption, OutputFormat
from quote2cash.masterdata.account_export import (
    ExportError,
    match_accounts,
    read_accounts,
    write_results,
)
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.matching import load_matching

customers_app = typer.Typer(
    help="Customers: matching accounts into golden customers.", no_args_is_help=True
)


@customers_app.command("match")
def match(
    accounts: Annotated[
        Path,
        typer.Argument(
            help="CSV: record_id,source,name,website,tax_id,country,postal_code,city,street"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for clusters.csv and review.csv")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="matching.yaml (default: the configuration in use)"),
    ] = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Cluster the accounts (auto / review / new); bad rows are reported and left out."""
    from quote2cash.configuration import active_config_dir

    console = Console(stderr=True)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        matcher = load_matching(config or active_config_dir() / "matching.yaml")
        loaded = read_accounts(accounts, matcher)
    except (ConfigError, ExportError, OSError) as exc:
        typer.echo(f"cannot match: {exc}", err=True)
        raise typer.Exit(2) from None
    for problem in loaded.problems:
        typer.echo(f"skipped {problem}", err=True)
    with Progress(console=console, transient=True, disable=output is OutputFormat.json) as bar:
        task = bar.add_task("comparing", total=max(len(loaded.ids), 1))
        run = match_accounts(
            matcher, loaded, lambda done, total: bar.update(task, completed=done, total=total)
        )
    counts = write_results(out, loaded.ids, run, loaded.rejected)
    summary = {
        "records": len(loaded.ids),
        "rejected": len(loaded.problems),
        "clusters": sum(1 for c in run.clusters if len(c) > 1),
        "outcomes": counts,
        "review_pairs": len(run.reviews),
        "out": str(out),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
    }
    if output is OutputFormat.json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"{summary['records']} records ({summary['rejected']} rejected): "
        f"{counts['auto']} auto-matched into {summary['clusters']} customers, "
        f"{counts['review']} for review ({summary['review_pairs']} pairs), {counts['new']} new; "
        f"results in {out}"
    )
