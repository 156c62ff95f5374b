"""``q2c operators`` and the acting identity of every deciding command.

A decision is taken as the owner of the API token given with ``--token`` or ``$Q2C_TOKEN``,
authenticated against the store; no typed name decides anything. Passwords are read hidden
from the terminal, or line by line from stdin with ``--password-stdin`` (for scripts).
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console

from quote2cash.cli_text import DataTable, escape, print_table
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import ROLES, IdentityError, NotAuthenticated, Operator

operators_app = typer.Typer(
    help="Operator accounts: roles, passwords (admins add and change operators).",
    no_args_is_help=True,
)
console = Console()

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="Q2C_TOKEN",
        show_envvar=True,
        help="Your API token; the decision is taken as its owner",
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password(s) from stdin, one per line"),
]
FormatOption = Annotated[str, typer.Option("--format", help="table or json")]
RoleOption = Annotated[list[str] | None, typer.Option("--role", help=", ".join(ROLES))]

_TTL = re.compile(r"(\d{1,6})([dhms]?)")
_UNITS = {"d": "days", "": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def cli_client() -> str:
    """How throttling and failure logs name a CLI user."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def acting_operator(runtime: Runtime, token: str | None) -> Operator:
    """The operator the given token authenticates, or a one-line error saying what to do."""
    from quote2cash.cli import fail

    if not token or not token.strip():
        fail(
            "this decision needs your API token: pass --token or set Q2C_TOKEN "
            "(create one with `q2c tokens create NAME --operator YOU`)"
        )
    try:
        return authenticate(runtime, token.strip())
    except NotAuthenticated as exc:
        fail(str(exc))


def authenticate(runtime: Runtime, token: str) -> Operator:
    from quote2cash.identity.tokens import authenticate_token

    return authenticate_token(runtime, token, client=cli_client())


def read_passwords(prompts: list[str], from_stdin: bool) -> list[str]:
    """One password per prompt: hidden input on a terminal, or one stdin line each."""
    from quote2cash.cli import fail

    if from_stdin:
        lines = [sys.stdin.readline().rstrip("\r\n") for _ in prompts]
        if not all(lines):
            fail(f"--password-stdin: expected {len(prompts)} line(s): {', '.join(prompts)}")
        return lines
    return [getpass.getpass(f"{prompt}: ") for prompt in prompts]


def parse_ttl(value: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, or a number of days."""
    from quote2cash.cli import fail

    match = _TTL.fullmatch(value.strip())
    if match is None:
        fail(f"--ttl {value!r} is not a lifetime; expected e.g. 30d, 12h, 90m or 3600s")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def check_format(format: str) -> None:
    from quote2cash.cli import fail

    if format not in ("table", "json"):
        fail(f"--format must be 'table' or 'json', not {format!r}")


def _decide(call: Any) -> Any:
    from quote2cash.cli import fail

    try:
        return call()
    except IdentityError as exc:
        fail(str(exc))


@operators_app.command("add")
def operators_add(
    name: str,
    role: RoleOption = None,
    email: Annotated[str | None, typer.Option(help="For OpenID Connect sign-in")] = None,
    db: DbOption = None,
    token: TokenOption = None,
) -> None:
    """Add an operator (admins only); prints their one-time password once."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.identity.accounts import add_operator

    if not role:
        fail(f"give the operator's role(s) with --role ({', '.join(ROLES)})")
    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    password = _decide(lambda: add_operator(runtime, name, role, by=by, email=email))
    console.print(
        escape(f"operator {name} added ({', '.join(sorted(role))}); one-time password, shown once ")
        + escape(f"(they set their own with `q2c operators password {name}`):"),
        highlight=False,
    )
    print(password)


@operators_app.command("roles")
def operators_roles(
    name: str, role: RoleOption = None, db: DbOption = None, token: TokenOption = None
) -> None:
    """Replace an operator's roles (admins only, never their own)."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.identity.accounts import change_roles

    if not role:
        fail(f"give the operator's new role(s) with --role ({', '.join(ROLES)})")
    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    _decide(lambda: change_roles(runtime, name, role, by=by))
    console.print(escape(f"operator {name}: {', '.join(sorted(set(role)))}"), highlight=False)


@operators_app.command("disable")
def operators_disable(name: str, db: DbOption = None, token: TokenOption = None) -> None:
    """Disable an operator: no sign-in, their tokens and sessions are refused (admins only)."""
    from quote2cash.cli import open_runtime
    from quote2cash.identity.accounts import disable_operator

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    _decide(lambda: disable_operator(runtime, name, by=by))
    console.print(escape(f"operator {name} disabled"), highlight=False)


@operators_app.command("enable")
def operators_enable(name: str, db: DbOption = None, token: TokenOption = None) -> None:
    """Enable a disabled operator again (admins only)."""
    from quote2cash.cli import open_runtime
    from quote2cash.identity.accounts import enable_operator

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    _decide(lambda: enable_operator(runtime, name, by=by))
    console.print(escape(f"operator {name} enabled"), highlight=False)


@operators_app.command("reset")
def operators_reset(name: str, db: DbOption = None, token: TokenOption = None) -> None:
    """Give an operator a new one-time password (admins only); prints it once."""
    from quote2cash.cli import open_runtime
    from quote2cash.identity.accounts import reset_password

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    password = _decide(lambda: reset_password(runtime, name, by=by))
    console.print(escape(f"operator {name}: new one-time password, shown once:"))
    print(password)


@operators_app.command("password")
def operators_password(
    name: str, password_stdin: PasswordStdin = False, db: DbOption = None
) -> None:
    """Change your own password (the current or one-time one proves it is you)."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.identity.accounts import set_password

    if password_stdin:
        old, new = read_passwords(["current password", "new password"], True)
    else:
        old, new, again = read_passwords(
            ["current (or one-time) password", "new password", "new password again"], False
        )
        if new != again:
            fail("the two new passwords differ; nothing changed")
    runtime = open_runtime(db)
    _decide(lambda: set_password(runtime, name, old, new, client=cli_client()))
    console.print(escape(f"password of operator {name} changed"), highlight=False)


@operators_app.command("list")
def operators_list(db: DbOption = None, format: FormatOption = "table") -> None:
    """Operators, their roles and state (never a password)."""
    from quote2cash.cli import open_runtime
    from quote2cash.identity.accounts import list_operators

    check_format(format)
    accounts = list_operators(open_runtime(db))
    if format == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "name": a.name,
                        "roles": sorted(a.roles),
                        "email": a.email,
                        "disabled": a.disabled,
                        "must_change_password": a.must_change_password,
                        "created_at": a.created_at.isoformat(),
                    }
                    for a in accounts
                ]
            )
        )
        return
    table = DataTable("name", "roles", "email", "state", "created")
    for a in accounts:
        state = (
            "disabled"
            if a.disabled
            else "must change password"
            if a.must_change_password
            else "active"
        )
        table.add_row(
            a.name, ", ".join(sorted(a.roles)), a.email or "", state, f"{a.created_at:%Y-%m-%d}"
        )
    print_table(console, table)
