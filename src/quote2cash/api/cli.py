"""``q2c serve`` and ``q2c tokens``: the API process and its bearer tokens.

Registered by ``quote2cash.cli`` (``serve_command``, ``tokens_app``); the shared CLI helpers
are imported when a command runs, so importing this module does not import the CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from quote2cash.bus.publisher import BusConfig, is_nats_url
from quote2cash.cli_identity import (
    FormatOption,
    PasswordStdin,
    RoleOption,
    TokenOption,
    acting_operator,
    check_format,
    cli_client,
    parse_ttl,
    read_passwords,
)
from quote2cash.cli_text import DataTable, escape, print_table
from quote2cash.console.links import ObjectLinks
from quote2cash.settings import get_settings

if TYPE_CHECKING:
    from quote2cash.api.app import StripeVerifier
    from quote2cash.engine.runtime import Runtime
    from quote2cash.identity import Operator
    from quote2cash.identity.oidc import OidcClient
    from quote2cash.retention.schedule import ArchiveSchedule
    from quote2cash.settings import Settings

tokens_app = typer.Typer(
    help="API tokens: each belongs to an operator, carries at most its roles, expires.",
    no_args_is_help=True,
)
console = Console()

DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]


def _issuer(runtime: Runtime, token: str | None, operator: str | None, stdin: bool) -> Operator:
    """Who issues the token: a password sign-in with --operator, else the given token."""
    from quote2cash.cli import fail
    from quote2cash.identity import SignInRefused
    from quote2cash.identity.signin import sign_in

    if operator is None:
        return acting_operator(runtime, token)
    (password,) = read_passwords([f"password of {operator}"], stdin)
    try:
        return sign_in(runtime, operator, password, client=cli_client())
    except SignInRefused as exc:
        fail(str(exc))


@tokens_app.command("create")
def tokens_create(
    name: str,
    role: RoleOption = None,
    ttl: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30d, 12h (default: $Q2C_TOKEN_TTL_DAYS)")
    ] = None,
    operator: Annotated[
        str | None,
        typer.Option("--operator", help="Sign in as this operator with a password instead"),
    ] = None,
    password_stdin: PasswordStdin = False,
    db: DbOption = None,
    token: TokenOption = None,
) -> None:
    """Create a token for yourself (printed once; only its hash is kept).

    Its roles default to all of yours; it can never carry a role you do not hold."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.identity import IdentityError
    from quote2cash.identity.tokens import issue_token

    lifetime = parse_ttl(ttl) if ttl is not None else None
    runtime = open_runtime(db)
    by = _issuer(runtime, token, operator, password_stdin)
    roles = role or sorted(by.roles)
    try:
        value = issue_token(runtime, by.name, name, roles, by=by, ttl=lifetime)
    except IdentityError as exc:
        fail(str(exc))
    console.print(
        f"token [bold]{escape(name)}[/] of {escape(by.name)} ({escape(', '.join(sorted(roles)))}) "
        "created; copy it now, it is not shown again:",
        highlight=False,
    )
    print(value)


@tokens_app.command("list")
def tokens_list(
    db: DbOption = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked tokens")] = False,
    format: FormatOption = "table",
) -> None:
    """Tokens by name, owner, roles and expiry (never their values)."""
    from quote2cash.cli import open_runtime
    from quote2cash.identity.tokens import list_tokens

    check_format(format)
    tokens = list_tokens(open_runtime(db), include_revoked=include_revoked)
    if format == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "name": t.name,
                        "owner": t.owner,
                        "roles": sorted(t.roles),
                        "created_at": t.created_at.isoformat(),
                        "created_by": t.created_by,
                        "expires_at": t.expires_at.isoformat(),
                        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                    }
                    for t in tokens
                ]
            )
        )
        return
    table = DataTable("name", "owner", "roles", "created", "expires", "revoked")
    for t in tokens:
        table.add_row(
            t.name,
            t.owner,
            ", ".join(sorted(t.roles)),
            f"{t.created_at:%Y-%m-%d %H:%M}",
            f"{t.expires_at:%Y-%m-%d %H:%M}",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    print_table(console, table)


@tokens_app.command("revoke")
def tokens_revoke(name: str, db: DbOption = None, token: TokenOption = None) -> None:
    """Revoke a token at once (yours, or any as an admin); requests carrying it get 401."""
    from quote2cash.cli import fail, open_runtime
    from quote2cash.identity import IdentityError
    from quote2cash.identity.tokens import revoke_token

    runtime = open_runtime(db)
    by = acting_operator(runtime, token)
    try:
        revoke_token(runtime, name, by=by)
    except IdentityError as exc:
        fail(str(exc))
    console.print(f"token {escape(name)} revoked", highlight=False)


def fixed_sandbox_secrets() -> frozenset[str]:
    """Secrets published with the sandbox: anyone can sign with them, so a hub never trusts them."""
    from quote2cash.connectors.stripe.config import SANDBOX_WEBHOOK_SECRET
    from quote2cash.sandbox.salesforce.emulator import DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD

    return frozenset({SANDBOX_WEBHOOK_SECRET, DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD})


def refuse_fixed_secrets(billing: Any, callout_secret: str | None) -> str | None:
    """Why this hub must not start with these webhook secrets, or None if they are its own."""
    config = getattr(billing, "config", None)
    secret: Any = get_settings().stripe_webhook_secret or getattr(config, "webhook_secret", None)
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    known = fixed_sandbox_secrets()
    if value in known:
        return (
            "the Stripe webhook secret is the sandbox's fixed, published one; anyone could sign "
            "webhooks with it. Use --hook-sandbox (a fresh secret per run) or configure your "
            "endpoint's own secret (whsec_...) in systems.yaml"
        )
    if callout_secret in known:
        return (
            "the Salesforce callout secret is a fixed, published sandbox value; "
            "set Q2C_SF_CALLOUT_SECRET to a secret of your own"
        )
    return None


def _stripe_verifier(billing: Any) -> StripeVerifier | None:
    """From ``Q2C_STRIPE_WEBHOOK_SECRET``, else the billing connector's configured secret: the
    same in every serve process of a deployment."""
    configured = get_settings().stripe_webhook_secret
    if configured is not None:
        return _verifier_of(configured.get_secret_value())
    config = getattr(billing, "config", None)
    if billing is None or getattr(config, "webhook_secret", None) is None:
        return None
    verifier: StripeVerifier = billing.verify_webhook
    return verifier


def _sandbox_state(sandbox: str) -> dict[str, Any]:
    path = Path(sandbox) / "state.json"
    if not path.exists():
        return {}
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def _callout_secret(state: dict[str, Any]) -> str | None:
    secret = os.environ.get("Q2C_SF_CALLOUT_SECRET")
    if secret:
        return secret
    value = (state.get("salesforce") or {}).get("callout_secret")
    return str(value) if value else None


def _verifier_of(secret: str) -> StripeVerifier:
    from quote2cash.connectors.stripe import verify_webhook

    def verify(payload: bytes, header: str) -> Any:
        return verify_webhook(payload, header, secret)

    return verify


async def _hook_sandbox(state: dict[str, Any], base_url: str) -> str | None:
    """Point the sandbox's emulators at this hub: a Stripe webhook endpoint (whose fresh signing
    secret is returned) and the Salesforce Closed-Won callout URL."""
    import aiohttp
    import stripe

    fresh: str | None = None
    st = state.get("stripe")
    if st:
        client = stripe.StripeClient(api_key=st["api_key"], base_addresses={"api": st["base_url"]})
        url = f"{base_url}/webhooks/stripe"

        def register() -> str:
            for endpoint in client.v1.webhook_endpoints.list(params={"limit": 100}).data:
                metadata: dict[str, Any] = endpoint.to_dict().get("metadata") or {}
                if metadata.get("registered_by") == "q2c serve":
                    client.v1.webhook_endpoints.delete(endpoint.id)
            created = client.v1.webhook_endpoints.create(
                params={
                    "url": url,
                    "enabled_events": ["*"],
                    "metadata": {"registered_by": "q2c serve"},
                }
            )
            return str(created.secret)

        fresh = await asyncio.to_thread(register)
    sf = state.get("salesforce")
    if sf:
        context = ssl.create_default_context(cafile=sf["ca_file"])
        async with aiohttp.ClientSession() as session:
            response = await session.patch(
                f"{sf['instance_url']}/_emulator/config",
                json={"callout_url": f"{base_url}/webhooks/salesforce"},
                ssl=context,
            )
            response.raise_for_status()
    return fresh


def _console_links(systems: Any) -> ObjectLinks:
    """The console links each object to the system it lives in, as the connectors are
    configured (the sandbox's emulators, or the real tenants)."""

    def base(role: Any, attribute: str) -> str | None:
        value = getattr(getattr(role, "config", None), attribute, None)
        return str(value) if value else None

    return ObjectLinks(
        crm_url=base(systems.crm, "instance_url"),
        billing_url=base(systems.billing, "base_url"),
    )


def _oidc_client(runtime: Runtime) -> OidcClient | None:
    """The console's OpenID Connect client from the ``Q2C_OIDC_*`` settings; a bad setting is
    one line naming it."""
    from quote2cash.cli import fail
    from quote2cash.identity.oidc import OidcConfigError, oidc_client_from_env

    try:
        return oidc_client_from_env()
    except OidcConfigError as exc:
        runtime.close()
        fail(str(exc))


def _archive_schedule(runtime: Runtime, settings: Settings) -> ArchiveSchedule | None:
    """Q2C_ARCHIVE_INTERVAL_SECONDS (0: never) with the retention settings."""
    from quote2cash.retention.folder import archive_dir_for
    from quote2cash.retention.policy import RetentionPolicy
    from quote2cash.retention.schedule import ArchiveSchedule

    if settings.archive_interval_seconds <= 0:
        return None
    url = runtime.engine.url.render_as_string(hide_password=False)
    return ArchiveSchedule(
        settings.archive_interval_seconds,
        archive_dir_for(url, settings.archive_dir),
        RetentionPolicy.from_settings(settings),
        settings.archive_max_events,
    )


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port)", min=0, max=65535)] = 8080,
    workers: Annotated[bool, typer.Option("--workers/--no-workers", help="Run the flows")] = True,
    poll_seconds: Annotated[
        float, typer.Option(help="Poll CRM and billing every N s (0: never)", min=0)
    ] = 30.0,
    config: Annotated[
        str | None,
        typer.Option("--config", help="systems.yaml (default: $Q2C_SYSTEMS_CONFIG or sandbox)"),
    ] = None,
    sandbox: Annotated[str, typer.Option("--workdir", help="The sandbox's folder")] = (
        ".q2c/sandbox"
    ),
    hook_sandbox: Annotated[
        bool,
        typer.Option(
            "--hook-sandbox/--no-hook-sandbox",
            help="With the sandbox: register this hub's webhook and callout URLs on the emulators",
        ),
    ] = True,
    config_dir: Annotated[
        str | None,
        typer.Option(help="Catalog and entity rules folder (default: $Q2C_CONFIG_DIR or packaged)"),
    ] = None,
    db: DbOption = None,
    with_console: Annotated[
        bool, typer.Option("--console/--no-console", help="Serve the operations console")
    ] = True,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            max=64,
            help="Serve processes sharing the port (SO_REUSEPORT), each with its workers unless "
            "--no-workers; the scheduled jobs run in one of them at a time",
        ),
    ] = 1,
    reuse_port: Annotated[
        bool,
        typer.Option(
            "--reuse-port/--no-reuse-port",
            help="Listen with SO_REUSEPORT, so independent q2c serve processes share the port",
        ),
    ] = False,
    worker_mode: Annotated[
        str,
        typer.Option(
            "--worker-mode",
            envvar="Q2C_SERVE_WORKER_MODE",
            help="process: the worker is a child q2c worker, restarted if it ends (the web's "
            "latency stays its own); loop: it runs on serve's own event loop; auto: process on "
            "PostgreSQL, loop on SQLite",
        ),
    ] = "auto",
) -> None:
    """Serve the API (webhooks, /v1, /health), the console (/console), the workers and polling,
    until SIGTERM."""
    from quote2cash.api.worker_child import WORKER_MODES

    if worker_mode not in WORKER_MODES:
        from quote2cash.cli import fail

        fail(f"--worker-mode is {worker_mode!r}; expected {', '.join(WORKER_MODES)}")
    chosen = ServeChoice(
        host,
        port,
        workers,
        poll_seconds,
        config,
        sandbox,
        hook_sandbox,
        config_dir,
        db,
        with_console,
        reuse_port or processes > 1,
        worker_mode=worker_mode,
    )
    if processes > 1:
        from quote2cash.api.processes import serve_processes

        serve_processes(chosen, processes)
    else:
        serve_one(chosen)


@dataclass(frozen=True)
class ServeChoice:
    """``q2c serve``'s options, as one process (or each of ``--processes``) runs them."""

    host: str
    port: int
    workers: bool
    poll_seconds: float
    config: str | None
    sandbox: str
    hook_sandbox: bool
    config_dir: str | None
    db: str | None
    with_console: bool
    reuse_port: bool = False
    worker_mode: str = "auto"
    """``--worker-mode`` as asked (``auto`` is resolved once the store is open)."""
    stripe_secret: str | None = field(default=None, repr=False)
    """A webhook secret the ``--processes`` parent registered on the sandbox for all of them."""
    hooked_by_parent: bool = False
    """The ``--processes`` parent pointed the sandbox's emulators at the port already."""


def sandbox_in_use(config: str | None) -> bool:
    return not (config or os.environ.get("Q2C_SYSTEMS_CONFIG"))


def hook_sandbox_once(chosen: ServeChoice, url: str) -> str | None:
    """Point the sandbox's emulators at ``url`` (``--processes``: once, for every process) and
    return the Stripe endpoint's fresh secret."""
    from quote2cash.cli import fail

    state = _sandbox_state(chosen.sandbox)
    try:
        return asyncio.run(_hook_sandbox(state, url))
    except Exception as exc:
        fail(f"could not point the sandbox's emulators at {url}: {type(exc).__name__}")


def serve_one(chosen: ServeChoice, *, on_started: Callable[[], None] | None = None) -> None:
    """One serve process; ``on_started`` (a ``--processes`` child) replaces the printed line."""
    from quote2cash.api.app import HUB
    from quote2cash.api.serve import ServeOptions, run_loop, serve
    from quote2cash.api.worker_child import WorkerChild, resolve_mode
    from quote2cash.cli import configure_budgets, fail, load_systems, open_runtime
    from quote2cash.configuration import active_config_dir
    from quote2cash.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    runtime = open_runtime(chosen.db)
    config, sandbox = chosen.config, chosen.sandbox
    use_sandbox = sandbox_in_use(config)
    systems = load_systems(config, sandbox)
    configure_budgets(runtime, config)
    state = _sandbox_state(sandbox) if use_sandbox else {}
    given = chosen.stripe_secret
    hooked = use_sandbox and chosen.hook_sandbox and given is None
    callout_secret = _callout_secret(state) if use_sandbox else _callout_secret({})
    elsewhere = chosen.hooked_by_parent
    refused = None if hooked or elsewhere else refuse_fixed_secrets(systems.billing, callout_secret)
    if refused is not None:
        runtime.close()
        fail(refused)
    oidc = _oidc_client(runtime) if chosen.with_console else None
    options = ServeOptions(
        chosen.host,
        chosen.port,
        chosen.workers,
        chosen.poll_seconds,
        active_config_dir(chosen.config_dir),
        reconcile_seconds=settings.reconcile_interval_seconds,
        console=_console_links(systems) if chosen.with_console else None,
        oidc=oidc,
        archive=_archive_schedule(runtime, settings),
        bus=BusConfig.from_settings(settings) if is_nats_url(settings.bus_url) else None,
        schedule_lease_seconds=settings.serve_lease_seconds,
        reuse_port=chosen.reuse_port,
        worker_mode=resolve_mode(chosen.worker_mode, runtime.engine.dialect.name),
        worker_child=WorkerChild(config, sandbox),
    )
    if given is not None:
        verifier: StripeVerifier | None = _verifier_of(given)
    else:
        verifier = None if hooked or elsewhere else _stripe_verifier(systems.billing)

    async def ready(url: str, app: Any) -> None:
        if hooked:
            try:
                fresh = await _hook_sandbox(state, url)
            except Exception as exc:
                fail(f"could not point the sandbox's emulators at {url}: {type(exc).__name__}")
            if fresh is not None:
                app[HUB].stripe_verifier = _verifier_of(fresh)
        if on_started is not None:
            on_started()
        else:
            console.print(escape(f"q2c serving on {url}"), highlight=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with systems:
            await serve(
                runtime,
                systems,
                stop,
                options,
                stripe_verifier=verifier,
                callout_secret=callout_secret,
                on_ready=ready,
            )

    try:
        run_loop(main(), settings.event_loop)
    finally:
        runtime.close()
