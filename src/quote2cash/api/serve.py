"""``q2c serve``: the API, the worker and the polling fallback; the worker in a supervised child
process (``worker_child.py``) or on serve's own event loop (``worker_mode``).

Shutdown (``stop`` set, e.g. on SIGTERM): the listener closes first and requests in flight
finish, so nothing is acknowledged that is not logged; pollers stop; the worker finishes its
batch (a child worker is sent SIGTERM once the requests in flight are answered); buffered spans
are exported; then the connectors close. Polling and webhooks give the same event ids, so an
event heard both ways is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from quote2cash.api.access_log import RedactingAccessLogger
from quote2cash.api.app import HubStatus, StripeVerifier, build_app
from quote2cash.api.worker_child import WorkerChild, WorkerMode, store_url_of, supervise_worker
from quote2cash.bus.publisher import BusConfig, BusPublisher
from quote2cash.console.links import ObjectLinks
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.audit_key import is_memory_store
from quote2cash.engine.checkpoints import checkpoint_forever
from quote2cash.engine.errors import IntegrationError
from quote2cash.engine.leadership import Leadership
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import freeze_start_up_heap
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
    schedule_lease_seconds: float = 15.0
    """The scheduled jobs' lease: a dead leader's jobs resume elsewhere within it (at once when
    its process on the same host is gone)."""
    reuse_port: bool = False
    """Listen with SO_REUSEPORT, so several serve processes share the port (``--processes``)."""
    worker_mode: WorkerMode = "loop"
    """Where the worker runs (with ``workers``): ``process``, a supervised child ``q2c worker``
    whose store threads never hold this loop's GIL (``q2c serve``'s default on PostgreSQL;
    ``worker_child`` says what it gets); ``loop``, on this event loop with the ``systems`` given
    here. The dataclass defaults to ``loop`` because a child cannot share the connector objects
    a caller injects in process (tests, embedders): it builds its own from ``worker_child``."""
    worker_child: WorkerChild = field(default_factory=WorkerChild)
    """The systems.yaml and sandbox folder of a ``process`` worker (its catalog: ``config_dir``)."""


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


WEB_SWITCH_INTERVAL = 0.0005
"""Python's thread switch interval while serve runs a worker on its own event loop
(``worker_mode`` ``loop``; Python's default is 5 ms).
The worker's store threads hold the GIL for long stretches (a batch's rows, its commits), and
the web's event loop waits up to a whole interval for it at every hand-off: with 0.5 ms the p99
of `GET /v1/invoices/{id}` at 1,000 requests/s beside serve's own worker at full speed fell from
37-38 to 14-15 ms, the worker's rate unchanged (docs/benchmarks.md)."""


_handoff_lock = threading.Lock()
_handoff: list[float] = []  # the interval before the first block still open, once per block


@contextlib.contextmanager
def quick_gil_handoff(seconds: float = WEB_SWITCH_INTERVAL) -> Iterator[None]:
    """The thread switch interval at most ``seconds`` while any such block is open (blocks may
    overlap, e.g. two serves in one test process); the last to close restores the interval the
    first found."""
    with _handoff_lock:
        _handoff.append(sys.getswitchinterval())
        sys.setswitchinterval(min(_handoff[-1], seconds))
    try:
        yield
    finally:
        with _handoff_lock:
            first = _handoff[0]
            _handoff.pop()
            if not _handoff:
                sys.setswitchinterval(first)


async def run_worker(
    runtime: Runtime, systems: Any, stop: asyncio.Event, status: HubStatus, config_dir: Path
) -> None:
    """The flows' worker; ``status`` says whether it runs (``/health`` reports it). While it
    runs, threads hand the GIL over every ``WEB_SWITCH_INTERVAL``, so requests do not wait on
    the worker's store threads for the default 5 ms a time."""
    from quote2cash.engine.worker import Worker
    from quote2cash.flows import build_registry
    from quote2cash.flows.deps import FlowDeps

    try:
        from quote2cash.settings import get_settings

        registry = build_registry(FlowDeps.build(runtime, systems, config_dir))
        worker = Worker(runtime, registry, nice=get_settings().worker_nice)
        status.worker_running = True
        with quick_gil_handoff():
            await worker.run(stop)
    except Exception as exc:
        log.error("the worker stopped: %s", type(exc).__name__, exc_info=True)
    finally:
        status.worker_running = False


async def reconcile_forever(
    runtime: Runtime, systems: Any, stop: asyncio.Event, every: float, *, owner: str = "serve"
) -> None:
    """The scheduled reconciliation: a run once ``every`` s have passed since the last run of any
    serve process (at once if none ran), then every ``every`` s; each report is kept in the store
    (``engine/hub_state.py``), so every serve process serves it. A failed run keeps the last."""
    from quote2cash.engine.hub_state import (
        RECONCILIATION,
        RECONCILIATION_RUN,
        keep_state,
        kept_state,
    )
    from quote2cash.reconcile.run import reconcile
    from quote2cash.usage.wiring import open_ledger

    wait = 0.0
    with contextlib.suppress(Exception):  # the last run unreadable: run now
        ran = await asyncio.to_thread(kept_state, runtime.engine, RECONCILIATION_RUN)
        if ran is not None:
            since = (runtime.clock.now() - ran.recorded_at).total_seconds()
            wait = min(every, max(0.0, every - since))
    while not stop.is_set():
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
            if stop.is_set():
                return
        wait = every
        try:
            report = await reconcile(runtime, systems, usage_ledger=open_ledger(runtime))
            await asyncio.to_thread(
                keep_state,
                runtime.engine,
                RECONCILIATION,
                report.to_json(),
                at=runtime.clock.now(),
                by=owner,
            )
            outcome = "kept"
            log.info("reconciliation: %d drift(s)", len(report.drifts))
        except Exception as exc:
            reason = exc if isinstance(exc, IntegrationError) else type(exc).__name__
            outcome = f"failed: {reason}"
            log.warning("reconciliation failed (%s); next try in %.0f s", reason, every)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                keep_state,
                runtime.engine,
                RECONCILIATION_RUN,
                {"outcome": outcome[:500]},
                at=runtime.clock.now(),
                by=owner,
            )


SCHEDULE_LEASE: Final = "serve.schedule"
"""The store lease whose holder, one serve process of the deployment, runs the scheduled jobs."""

Jobs = Callable[[asyncio.Event], list[Coroutine[Any, Any, None]]]
"""The scheduled jobs and pollers, each to run until the given event is set."""


async def lead_schedule(leadership: Leadership, jobs: Jobs, stop: asyncio.Event) -> None:
    """Run ``jobs`` while this process holds the schedule's lease, until ``stop``: started when
    the lease is taken (a lapsed one, or at once when its holder's process here is gone), stopped
    if it is lost, and handed over on a clean stop."""
    running: tuple[asyncio.Event, list[asyncio.Task[None]]] | None = None

    async def stop_jobs() -> None:
        nonlocal running
        if running is not None:
            running[0].set()
            await asyncio.gather(*running[1], return_exceptions=True)
            running = None

    try:
        while not stop.is_set():
            try:
                held = await leadership.held()
            except Exception as exc:
                log.warning("schedule lease unreadable (%s)", type(exc).__name__)
                held = False
            if held and running is None:
                log.info("this process (%s) runs the scheduled jobs", leadership.owner)
                done = asyncio.Event()
                running = (done, [asyncio.create_task(job) for job in jobs(done)])
            elif not held and running is not None:
                log.warning("schedule lease lost: this process stops its scheduled jobs")
                await stop_jobs()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(leadership.seconds / 3, 1.0))
    finally:
        await stop_jobs()
        await leadership.release()


def has_scheduled_jobs(options: ServeOptions) -> bool:
    from quote2cash.settings import get_settings

    archive = options.archive is not None and options.archive.every > 0
    return bool(
        options.poll_seconds > 0
        or options.reconcile_seconds > 0
        or archive
        or get_settings().usage_watch_dir
    )


def scheduled_jobs(
    runtime: Runtime,
    systems: Any,
    stop: asyncio.Event,
    options: ServeOptions,
    owner: str,
    pollers: list[Poller] | None,
) -> list[Coroutine[Any, Any, None]]:
    """What one serve process of a deployment runs at a time: polling, the reconciliation and
    archive schedules, the usage drop folder."""
    from quote2cash.settings import get_settings

    jobs: list[Coroutine[Any, Any, None]] = []
    if options.poll_seconds > 0:
        chosen = default_pollers(runtime, systems) if pollers is None else pollers
        jobs.append(poll_forever(chosen, stop, options.poll_seconds))
    if options.reconcile_seconds > 0:
        jobs.append(
            reconcile_forever(runtime, systems, stop, options.reconcile_seconds, owner=owner)
        )
    if options.archive is not None and options.archive.every > 0:
        jobs.append(archive_forever(runtime, stop, options.archive))
    usage_drop = get_settings().usage_watch_dir
    if usage_drop:
        from quote2cash.usage.watch import watch_forever

        jobs.append(watch_forever(runtime.engine, runtime.clock, Path(usage_drop), stop))
    return jobs


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
    if (
        options.workers
        and options.worker_mode == "process"
        and is_memory_store(store_url_of(runtime))
    ):
        raise ValueError(
            "a worker in a child process needs a store it can open too, not an in-memory SQLite: "
            "use a file or PostgreSQL, or worker_mode 'loop'"
        )
    status = HubStatus(worker_running=False if options.workers else None)
    web_closed = asyncio.Event()  # a child worker stops once requests in flight are answered
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
        site = web.TCPSite(
            runner, options.host, options.port, reuse_port=options.reuse_port or None
        )
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        if options.workers and options.worker_mode == "process":
            supervised = supervise_worker(
                runtime,
                options.worker_child,
                options.config_dir,
                web_closed,
                status,
                options.shutdown_seconds,
            )
            tasks.append(asyncio.create_task(supervised))
        elif options.workers:
            tasks.append(
                asyncio.create_task(run_worker(runtime, systems, stop, status, options.config_dir))
            )
        else:  # the worker checkpoints the audit head; without one, API decisions need it too
            tasks.append(asyncio.create_task(checkpoint_forever(runtime, stop)))
        if options.bus is not None:
            publisher = BusPublisher(runtime.engine, options.bus, clock=runtime.clock)
            tasks.append(asyncio.create_task(publisher.run(stop)))
        leadership = Leadership(
            runtime.engine, SCHEDULE_LEASE, options.schedule_lease_seconds, clock=runtime.clock
        )

        def jobs(done: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
            return scheduled_jobs(runtime, systems, done, options, leadership.owner, pollers)

        if has_scheduled_jobs(options):
            tasks.append(asyncio.create_task(lead_schedule(leadership, jobs, stop)))
        mode = f"{options.workers} ({options.worker_mode})" if options.workers else "False"
        log.info("serving on %s (workers: %s)", url, mode)
        if stripe_verifier is None:
            log.warning("no Stripe webhook secret: Stripe webhooks are answered 503")
        if callout_secret is None:
            log.warning("no Salesforce callout secret: callouts are answered 503")
        if on_ready is not None:
            await on_ready(url, app)
        # Else a full collection traverses the whole start-up heap while requests wait (up to
        # 190 ms measured); a serve without workers has no worker to freeze it.
        freeze_start_up_heap()
        await stop.wait()
    finally:
        stop.set()
        await runner.cleanup()
        web_closed.set()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(tracing.flush)
