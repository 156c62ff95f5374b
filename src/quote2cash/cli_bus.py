"""``q2c bus``: publish the outbox to NATS JetStream, tail the business-event stream, show the
publisher's backlog."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Annotated, Any

import typer

from quote2cash.cli_text import FormatOption, OutputFormat, escape, show_records

bus_app = typer.Typer(
    help="The outbound business-event stream on NATS JetStream (Q2C_BUS_URL).",
    no_args_is_help=True,
)
DbOption = Annotated[
    str | None, typer.Option("--db", help="Store URL (default: $Q2C_DATABASE_URL or q2c.sqlite)")
]
UrlOption = Annotated[str | None, typer.Option("--url", help="NATS server (default: $Q2C_BUS_URL)")]


def register(app: typer.Typer) -> None:
    app.add_typer(bus_app, name="bus")


def _config(url: str | None) -> Any:
    from quote2cash.bus.publisher import BusConfig, is_nats_url
    from quote2cash.cli import fail
    from quote2cash.settings import get_settings

    config = BusConfig.from_settings(get_settings())
    if url is not None:
        config = BusConfig(**{**config.__dict__, "url": url})
    if not is_nats_url(config.url):
        fail(f"Q2C_BUS_URL is {config.url!r}; expected nats://host:port (or --url)")
    return config


@bus_app.command("publish")
def publish(
    db: DbOption = None,
    url: UrlOption = None,
    once: Annotated[
        bool, typer.Option(help="Publish what the outbox holds now, then exit")
    ] = False,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Send the outbox's business events to the stream in order until SIGTERM or Ctrl-C
    (``q2c serve`` runs this itself when Q2C_BUS_URL is a NATS server)."""
    from quote2cash.bus.publisher import BusError, BusPublisher, connect, ensure_stream
    from quote2cash.cli import console, fail, open_runtime
    from quote2cash.observability.logging import configure_logging
    from quote2cash.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    config = _config(url)
    rt = open_runtime(db)
    publisher = BusPublisher(rt.engine, config, clock=rt.clock)

    async def drain() -> None:
        from quote2cash.bus.outbox_store import drop_lease, lease_owner

        if not await publisher.lead():
            owner = lease_owner(rt.engine, config.stream)
            fail(f"publisher {owner} holds the lease of {config.where}: it publishes the outbox")
        try:
            async with connect(config) as js:
                await ensure_stream(js, config)
                await publisher.settle_tail(js)
                while await publisher.publish_batch(js):
                    pass
        finally:
            drop_lease(rt.engine, config.stream, publisher.owner)

    async def forever() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await publisher.run(stop)

    if not once:
        asyncio.run(forever())
        return
    try:
        asyncio.run(drain())
    except BusError as exc:
        fail(str(exc))
    s = publisher.stats
    figures = {
        "published": s.published,
        "already_on_stream": s.settled_on_start,
        "duplicates_dropped": s.duplicates,
    }
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(figures) + "\n")
    else:
        console.print(
            f"published {s.published} events to {escape(config.where)} "
            f"({s.settled_on_start} already there, {s.duplicates} dropped as duplicates)"
        )


@bus_app.command("status")
def status(db: DbOption = None, output: FormatOption = OutputFormat.table) -> None:
    """The outbox's backlog: business events not yet on the stream, and the oldest's age."""
    from quote2cash.bus import outbox_store
    from quote2cash.cli import console, open_runtime

    rt = open_runtime(db)
    lag = outbox_store.backlog(rt.engine)
    age = (rt.clock.now() - lag.oldest).total_seconds() if lag.oldest else 0.0
    record = {
        "pending": lag.pending,
        "oldest_recorded_at": lag.oldest.isoformat() if lag.oldest else None,
        "oldest_age_seconds": round(age, 3),
    }
    show_records(console, [record], list(record), output)


@bus_app.command("tail")
def tail(
    url: UrlOption = None,
    durable: Annotated[
        str, typer.Option(help="Durable consumer name: a restart resumes after its last ack")
    ] = "q2c-tail",
    subject: Annotated[
        str | None, typer.Option(help="Only these subjects, e.g. 'q2c.payment.*'")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many")] = None,
    idle: Annotated[
        float | None, typer.Option(min=0.5, help="Stop after this many seconds without one")
    ] = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Print business events as they arrive (one JSON object a line with --format json),
    acknowledging each after it is printed."""
    from quote2cash.bus.publisher import BusError
    from quote2cash.bus.tail import tail as run_tail
    from quote2cash.cli import console, fail

    config = _config(url)

    def show(event: dict[str, Any]) -> None:
        if output is OutputFormat.json:
            sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
            sys.stdout.flush()
            return
        fields = ("time", "type", "subject", "correlation_id")
        console.print(
            "  ".join(escape(str(event.get(name))) for name in fields),
            highlight=False,
            soft_wrap=True,
        )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_tail(
            config,
            show,
            durable=durable,
            filter_subject=subject,
            count=count,
            idle_seconds=idle,
            stop=stop,
        )

    try:
        asyncio.run(main())
    except BusError as exc:
        fail(str(exc))
