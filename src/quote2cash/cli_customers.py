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

from quote2cash.cli_identity import DbOption, TokenOption
from quote2cash.cli_text import DataTable, FormatOption, OutputFormat, escape, print_table
from quote2cash.engine.errors import ConflictError, DataError
from quote2cash.identity import IdentityError
from quote2cash.masterdata.account_export import (
    ExportError,
    match_accounts,
    read_accounts,
    write_results,
)
from quote2cash.masterdata.config import ConfigError
from quote2cash.masterdata.golden import StewardTask
from quote2cash.masterdata.matching import load_matching

customers_app = typer.Typer(
    help="Customers: matching accounts into golden customers; data steward tasks.",
    no_args_is_help=True,
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


@customers_app.command("review")
def review(
    account: Annotated[
        str | None,
        typer.Argument(help="The account's task to show or decide: CRM id, or SYSTEM:ID"),
    ] = None,
    same_as: Annotated[
        str | None,
        typer.Option("--same-as", help="Decide: the account is this customer (GLOBAL_ID)"),
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="Decide: the account is a customer of its own")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="Why (kept in the audit log)")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="configuration folder (default: the one in use)"),
    ] = None,
    db: DbOption = None,
    token: TokenOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Data steward tasks: accounts onboarding would not file alone (their deals wait).

    Without ACCOUNT: every open task. With ACCOUNT: its evidence. With --same-as or --new: the
    decision (taken as the owner of --token; the account's parked deals resume)."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.cli_identity import acting_operator
    from quote2cash.configuration import active_config_dir
    from quote2cash.flows.customers import decide_steward_task
    from quote2cash.flows.deps import golden_customers

    if same_as is not None and new:
        fail("give --same-as GLOBAL_ID or --new, not both")
    if (same_as is not None or new) and account is None:
        fail("name the ACCOUNT whose task you decide")
    runtime = open_runtime(db)
    golden = golden_customers(runtime, config or active_config_dir())
    if golden is None:
        fail("no matching.yaml in the configuration: onboarding does not match customers")
    if account is None:
        tasks = golden.tasks()
        if output is OutputFormat.json:
            typer.echo(json.dumps([t.as_dict() for t in tasks]))
            return
        table = DataTable("account", "name", "waiting since", "may be", "best evidence")
        for t in tasks:
            best = max(t.reviews, key=lambda r: float(r.evidence.get("score", 0)))
            table.add_row(
                f"{t.system}:{t.local_id}",
                t.name,
                f"{t.opened_at:%Y-%m-%d %H:%M}Z",
                "\n".join(t.options),
                str(best.evidence.get("reason", "")),
            )
        console = Console()
        print_table(console, table)
        console.print(f"{len(tasks)} open task{'' if len(tasks) == 1 else 's'}")
        return
    system, _, local_id = account.rpartition(":")
    system = system or "crm"
    if same_as is None and not new:
        task = golden.task(system, local_id)
        if task is None:
            fail(f"account {system}:{local_id} has no open steward task")
        if output is OutputFormat.json:
            typer.echo(json.dumps(task.as_dict()))
            return
        _show(task)
        return
    by = acting_operator(runtime, token)
    try:
        decided = decide_steward_task(
            runtime, golden, system, local_id, same_as=same_as, by=by, note=note
        )
    except (DataError, ConflictError, IdentityError) as exc:
        fail(str(exc))
    result = {
        "account": f"{system}:{local_id}",
        "decision": "same" if same_as else "new",
        "global_id": decided.decision.global_id,
        "by": by.name,
        "event_id": decided.event_id,
    }
    if output is OutputFormat.json:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"account {system}:{local_id} is customer {decided.decision.global_id} "
        f"(decided by {by.name}); its waiting deals resume"
    )


def _show(task: StewardTask) -> None:
    console = Console()
    console.print(
        escape(f"{task.system}:{task.local_id} {task.name!r} (its own id {task.global_id})"),
        highlight=False,
    )
    table = DataTable("may be customer", "matched record", "score", "outcome", "evidence")
    for r in task.reviews:
        ev = r.evidence
        table.add_row(
            r.existing_global_id,
            ":".join(r.existing),
            str(ev.get("score", "")),
            str(ev.get("outcome", "")),
            str(ev.get("reason", "")),
        )
    print_table(console, table)
    console.print(
        escape(
            f"decide: q2c customers review {task.system}:{task.local_id} "
            "--same-as GLOBAL_ID | --new"
        ),
        highlight=False,
    )
