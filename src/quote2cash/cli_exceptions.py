"""``q2c dlq retry|correct|resolve`` and ``q2c quarantine``: the exception queue's actions and
the quarantine's decisions from the command line, taken as the owner of ``--token``.

Every table command takes ``--format json``; text from data is escaped before it is printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from quote2cash.cli_identity import DbOption, FormatOption, TokenOption, acting_operator
from quote2cash.cli_text import DataTable, escape
from quote2cash.engine.control import ControlError
from quote2cash.identity import IdentityError

quarantine_app = typer.Typer(
    help="Signed deliveries the hub could not understand: list, show, release, discard.",
    no_args_is_help=True,
)
console = Console()
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log)")]


def _open(db: str | None) -> Any:
    from quote2cash.cli import open_runtime

    return open_runtime(db)


def _decide(call: Any) -> Any:
    from quote2cash.cli import fail

    try:
        return call()
    except (ControlError, IdentityError) as exc:
        fail(str(exc))


def _check_format(format: str) -> None:
    from quote2cash.cli_identity import check_format

    check_format(format)


def dlq_retry(pos: int, db: DbOption = None, token: TokenOption = None) -> None:
    """Put a failed event back in its place (finance-sensitive: request a replay instead)."""
    from quote2cash.engine.exceptions import retry_exception

    runtime = _open(db)
    by = acting_operator(runtime, token)
    _decide(lambda: retry_exception(runtime, pos, by=by))
    console.print(f"event {pos} put back in its place; the worker retries it")


def dlq_correct(
    pos: int,
    data_file: Annotated[Path, typer.Option("--data-file", help="The event's new data (JSON)")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log)")] = "",
    db: DbOption = None,
    token: TokenOption = None,
) -> None:
    """Replace a failed event's data and retry it; the diff is audited. A finance-sensitive
    event gets a replay request carrying the correction, for a finance approver."""
    from quote2cash.cli import fail
    from quote2cash.engine.exceptions import correct_and_retry

    try:
        data = json.loads(data_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        fail(f"--data-file {data_file}: not readable JSON ({type(exc).__name__}: {exc})")
    if not isinstance(data, dict):
        fail(f"--data-file {data_file}: expected a JSON object (the event's whole data)")
    runtime = _open(db)
    by = acting_operator(runtime, token)
    request = _decide(lambda: correct_and_retry(runtime, pos, data, by=by, reason=reason))
    if request is None:
        console.print(f"event {pos} corrected and put back in its place")
    else:
        console.print(
            f"event {pos} is finance-sensitive: replay request {request.id} carries the "
            "correction; a finance approver must approve it"
        )


def dlq_resolve(
    pos: int, reason: ReasonOption, db: DbOption = None, token: TokenOption = None
) -> None:
    """Close a failed event without running it; its subject's later events flow again."""
    from quote2cash.engine.exceptions import resolve_exception

    runtime = _open(db)
    by = acting_operator(runtime, token)
    _decide(lambda: resolve_exception(runtime, pos, by=by, reason=reason))
    console.print(f"event {pos} resolved")


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option(help="held, released, discarded or all")] = "held",
    limit: int = 50,
    after: Annotated[int | None, typer.Option(help="Only ids after this one")] = None,
    db: DbOption = None,
    format: FormatOption = "table",
) -> None:
    """Quarantined deliveries (without their bodies; `show` has them)."""
    from quote2cash.engine.quarantine import list_quarantine

    _check_format(format)
    rows = _decide(
        lambda: list_quarantine(
            _open(db), status=None if status == "all" else status, limit=limit, after=after
        )
    )
    if format == "json":
        print(json.dumps([r.summary() for r in rows], default=str))
        return
    table = DataTable("id", "source", "received", "status", "size", "reason")
    for r in rows:
        table.add_row(
            str(r.id),
            r.source,
            f"{r.received_at:%Y-%m-%d %H:%M}Z",
            r.status,
            str(len(r.body)),
            r.reason,
        )
    console.print(table)
    console.print(f"{len(rows)} deliver{'y' if len(rows) == 1 else 'ies'}")


@quarantine_app.command("show")
def quarantine_show(delivery_id: int, db: DbOption = None) -> None:
    """One delivery as JSON: why, when, the headers kept and its raw body."""
    from quote2cash.engine.quarantine import get_quarantined

    delivery = _decide(lambda: get_quarantined(_open(db), delivery_id))
    out = delivery.summary()
    out["headers"] = delivery.headers
    out["body"] = delivery.body.decode("utf-8", "replace")
    print(json.dumps(out, default=str))


@quarantine_app.command("release")
def quarantine_release(
    delivery_id: int, note: str = "", db: DbOption = None, token: TokenOption = None
) -> None:
    """Take a delivery in, if the hub understands it now (it is logged as its event)."""
    from quote2cash.api.intake import understand_delivery
    from quote2cash.engine.quarantine import release_delivery

    runtime = _open(db)
    by = acting_operator(runtime, token)
    event = _decide(
        lambda: release_delivery(
            runtime, delivery_id, lambda d: understand_delivery(runtime, d), by=by, note=note
        )
    )
    console.print(escape(f"delivery {delivery_id} released as event {event.id}"))


@quarantine_app.command("discard")
def quarantine_discard(
    delivery_id: int, reason: ReasonOption, db: DbOption = None, token: TokenOption = None
) -> None:
    """Decide a delivery is not to be taken in (kept, marked discarded, audited)."""
    from quote2cash.engine.quarantine import discard_delivery

    runtime = _open(db)
    by = acting_operator(runtime, token)
    _decide(lambda: discard_delivery(runtime, delivery_id, by=by, reason=reason))
    console.print(f"delivery {delivery_id} discarded")


def register(app: typer.Typer, dlq_app: typer.Typer) -> None:
    dlq_app.command("retry")(dlq_retry)
    dlq_app.command("correct")(dlq_correct)
    dlq_app.command("resolve")(dlq_resolve)
    app.add_typer(quarantine_app, name="quarantine")
