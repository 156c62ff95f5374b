"""``q2c serve``: the API, the worker loop and the polling fallback in one asyncio process.

Shutdown (``stop`` set, e.g. on SIGTERM): the listener closes first and requests in flight
finish, so nothing is acknowledged that is not logged; pollers stop; the worker finishes its
batch; buffered spans are exported; then the connectors close. Polling and webhooks give the
same event ids, so an event heard both ways is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from quote2cash.api.access_log import RedactingAccessLogger
from quote2cash.api.app import HubStatus, StripeVerifier, build_app
from quote2cash.bus.publisher import BusConfig, BusPublisher
from quote2cash.console.links import ObjectLinks
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.checkpoints import checkpoint_forever
from quote2cash.engine.errors import IntegrationError
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.customers import poll_account_merges
from quote2cash.flows.intake import poll_accounts, poll_amendments, poll_billing, poll_crm
from quote2cash.masterdata.xref import XrefStore
from quote2cash.observability import tracing
from quote2cash.retention.schedule import ArchiveSchedule, archive_forever

if TYPE_CHECKING:
    from quote2cash.identity.oidc import OidcClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: bool = True
    poll_seconds: float = 30.0
    config_dir: Path = field(default_factory=packaged_config_dir)
    shutdown_seconds: float = 10.0
    reconcile_seconds: float = 0.0
    """Run a three-way reconciliation every N s and keep its report for the API (0: never)."""
    console: ObjectLinks | None = field(default_factory=ObjectLinks)
    """Serve the operations console under ``/console``, linking objects with these bases
    (None: no console)."""
    oidc: OidcClient | None = None
    """The console's OpenID Connect sign-in (None: names and passwords only)."""
    archive: ArchiveSchedule | None = None
    """Archive expired processed events on this schedule (None: never)."""
    bus: BusConfig | None = None
    """Publish the outbox's business events to this JetStream stream (None: not here)."""


Poller = tuple[str, Callable[[], Awaitable[int]]]
"""A named fallback poll; returns how many new events it logged."""


def default_pollers(runtime: Runtime, systems: Any) -> list[Poller]:
    """Closed-won deals, amendment requests and account changes from the CRM and events from
    billing, for the roles configured; each poll passes its system's gate, so its requests
    (every page) spend the deployment's shared budgets like the workers' calls."""
    pollers: list[Poller] = []
    if systems.crm is not None:
        xref = XrefStore(runtime.engine, runtime.clock)
        pollers.append(("crm", partial(poll_crm, runtime, systems.crm)))
        pollers.append(("crm.amendments", partial(poll_amendments, runtime, systems.crm, xref)))
        pollers.append(("crm.accounts", partial(poll_accounts, runtime, systems.crm)))
        pollers.append(("crm.merges", partial(poll_account_merges, runtime, systems.crm)))
    if systems.billing is not None:
        pollers.append(("billing", partial(poll_billing, runtime, systems.billing)))
    return [(name, partial(_gated_poll, runtime, name, poll)) for name, poll in pollers]


async def _gated_poll(runtime: Runtime, name: str, poll: Callable[[], Awaitable[int]]) -> int:
    system = name.split(".")[0]
    async with runtime.gates.call(system, f"{system}.poll_{name.replace('.', '_')}"):
        return await poll()


async def poll_forever(pollers: list[Poller], stop: asyncio.Event, every: float) -> None:
    """The fallback for missed webhooks: run every poller each ``every`` seconds until stopped."""
    while not stop.is_set():
        for name, poll in pollers:
            if stop.is_set():
                break
            try:
                with tracing.intake_span(f"poll {name}", {"q2c.via": "poll"}):
                    new = await poll()
                if new:
                    log.info("polling %s: %d new event(s)", name, new)
            except Exception as exc:
                reason = exc if isinstance(exc, IntegrationError) else type(exc).__name__
                log.warning("polling %s failed (%s); next try in %.0f s", name, reason, every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


async def run_worker(
    runtime: Runtime, systems: Any, stop: asyncio.Event, status: HubStatus, config_dir: Path
) -> None:
    """The flows' worker; ``status`` says whether it runs (``/health`` reports it)."""
    from quote2cash.engine.worker import Worker
    from quote2cash.flows import build_registry
    from quote2cash.flows.deps import FlowDeps

    try:
        worker = Worker(runtime, build_registry(FlowDeps.build(runtime, systems, config_dir)))
        status.worker_running = True
        await worker.run(stop)
    except Exception as exc:
        log.error("the worker stopped: %s", type(exc).__name__, exc_info=True)
    finally:
        status.worker_running = False


async def reconcile_forever(
    runtime: Runtime, systems: Any, stop: asyncio.Event, status: HubStatus, every: float
) -> None:
    """The scheduled reconciliation: one run now, then every ``every`` s; the last report is
    kept in ``status`` (served at ``/v1/reconciliation``). A failed run keeps the last report."""
    from quote2cash.reconcile.run import reconcile
    from quote2cash.usage.wiring import open_ledger

    while not stop.is_set():
        try:
            report = await reconcile(runtime, systems, usage_ledger=open_ledger(runtime))
            status.reconciliation = report
            log.info("reconciliation: %d drift(s)", len(report.drifts))
        except Exception as exc:
            reason = exc if isinstance(exc, IntegrationError) else type(exc).__name__
            log.warning("reconciliation failed (%s); next try in %.0f s", reason, every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


def run_loop(main: Coroutine[Any, Any, None], choice: str = "auto") -> None:
    """Run ``serve``'s coroutine on uvloop where installed (``auto``), or asyncio's own loop:
    uvloop halves the loop's CPU per request, which bounds how many requests one process takes."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


async def serve(
    runtime: Runtime,
    systems: Any,
    stop: asyncio.Event,
    options: ServeOptions,
    *,
    stripe_verifier: StripeVerifier | None,
    callout_secret: str | None,
    on_ready: Callable[[str, web.Application], Awaitable[None]] | None = None,
    pollers: list[Poller] | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets the bound base URL (port 0 is resolved).

    ``pollers`` defaults to ``default_pollers(runtime, systems)``.
    """
    status = HubStatus(worker_running=False if options.workers else None)
    app = build_app(
        runtime,
        stripe_verifier=stripe_verifier,
        callout_secret=callout_secret,
        status=status,
        console_links=options.console,
        oidc=options.oidc,
    )
    runner = web.AppRunner(
        app, shutdown_timeout=options.shutdown_seconds, access_log_class=RedactingAccessLogger
    )
    await runner.setup()
    tasks: list[asyncio.Task[None]] = []
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        if options.workers:
            tasks.append(
                asyncio.create_task(run_worker(runtime, systems, stop, status, options.config_dir))
            )
        else:  # the worker checkpoints the audit head; without one, API decisions need it too
            tasks.append(asyncio.create_task(checkpoint_forever(runtime, stop)))
        if options.poll_seconds > 0:
            tasks.append(
                asyncio.create_task(
                    poll_forever(
                        default_pollers(runtime, systems) if pollers is None else pollers,
                        stop,
                        options.poll_seconds,
                    )
                )
            )
        if options.reconcile_seconds > 0:
            tasks.append(
                asyncio.create_task(
                    reconcile_forever(runtime, systems, stop, status, options.reconcile_seconds)
                )
            )
        if options.bus is not None:
            publisher = BusPublisher(runtime.engine, options.bus, clock=runtime.clock)
            tasks.append(asyncio.create_task(publisher.run(stop)))
        if options.archive is not None and options.archive.every > 0:
            tasks.append(asyncio.create_task(archive_forever(runtime, stop, options.archive)))
        from quote2cash.settings import get_settings

        usage_drop = get_settings().usage_watch_dir
        if usage_drop:
            from quote2cash.usage.watch import watch_forever

            tasks.append(
                asyncio.create_task(
                    watch_forever(runtime.engine, runtime.clock, Path(usage_drop), stop)
                )
            )
        log.info("serving on %s (workers: %s)", url, options.workers)
        if stripe_verifier is None:
            log.warning("no Stripe webhook secret: Stripe webhooks are answered 503")
        if callout_secret is None:
            log.warning("no Salesforce callout secret: callouts are answered 503")
        if on_ready is not None:
            await on_ready(url, app)
        await stop.wait()
    finally:
        stop.set()
        await runner.cleanup()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(tracing.flush)
