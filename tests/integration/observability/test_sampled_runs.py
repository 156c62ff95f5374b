"""Sampling is decided once per transaction, at intake: a dropped transaction's events, their
steps and the events they emit make no span at all yet keep its trace (flags: not sampled); a
kept one is whole. Metrics count every event either way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import TRACEPARENT, Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.observability import metrics, tracing
from quote2cash.observability.sampling import rate_limited_sampler
from quote2cash.store.schema import events as events_table
from support.served import served

KEPT = 2
DEALS = 7


class FrozenClock:
    """The sampler's clock stands still: its bucket holds ``KEPT`` tokens and never refills."""

    def __call__(self) -> float:
        return 1000.0


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    caught = InMemorySpanExporter()
    provider = TracerProvider(sampler=rate_limited_sampler(KEPT, FrozenClock()))
    provider.add_span_processor(SimpleSpanProcessor(caught))
    tracing.install(provider)
    try:
        yield caught
    finally:
        tracing.shutdown()


def traced(event: Event, traceparent: str) -> Event:
    return msgspec.structs.replace(event, traceparent=traceparent)


def handled(event_type: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "q2c_events_handled_total", {"event_type": event_type, "outcome": "done"}
    )
    return value or 0.0


async def test_a_dropped_transaction_makes_no_span_and_a_kept_one_is_whole(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    registry = Registry()
    seen_traced: dict[str, bool] = {}

    @registry.on("crm.opportunity.closed_won")
    async def closed_won(ctx: HandlerContext, event: Event) -> None:
        seen_traced[event.id] = trace.get_current_span().is_recording()
        await ctx.step("crm.get_deal", lambda _k: {"n": event.data["n"]})
        await ctx.step("billing.create_subscription", lambda _k: f"sub_{event.data['n']}")
        ctx.emit("billing.subscription.activated", event.subject, {"n": event.data["n"]})

    @registry.on("billing.subscription.activated")
    async def activated(ctx: HandlerContext, event: Event) -> None:
        await ctx.step("erp.book_order", lambda _k: event.data["n"])

    metrics.configure(True)
    before = handled("crm.opportunity.closed_won"), handled("billing.subscription.activated")
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    try:
        deals = [
            new_event("crm.opportunity.closed_won", f"contract:C-{n}", {"n": n}, source="crm")
            for n in range(DEALS)
        ]
        stamped, spans = tracing.start_intake(deals, "poll")
        receipts = runtime.log.append_many(stamped)
        tracing.end_intake(spans, [r.duplicate for r in receipts])
        assert sum(s is not None for s in spans) == KEPT, "asking first takes no token"
        report = await Worker(runtime, registry).drain()
        assert report.processed == 2 * DEALS
        with runtime.engine.connect() as conn:
            logged = conn.execute(
                select(events_table.c.type, events_table.c.subject, events_table.c.traceparent)
            ).all()
    finally:
        runtime.close()

    assert len(logged) == 2 * DEALS
    by_subject: dict[str, set[str]] = {}
    for _, subject, traceparent in logged:
        assert traceparent is not None and TRACEPARENT.match(traceparent), traceparent
        by_subject.setdefault(subject, set()).add(traceparent[3:35])
    assert all(len(ids) == 1 for ids in by_subject.values()), "a follow-up keeps its trace"
    sampled = {tp[3:35] for _, _, tp in logged if int(tp[-2:], 16) & 1}
    dropped = {tp[3:35] for _, _, tp in logged if not int(tp[-2:], 16) & 1}
    assert len(sampled) == KEPT and len(dropped) == DEALS - KEPT

    finished = exporter.get_finished_spans()
    per_trace = Counter(f"{s.context.trace_id:032x}" for s in finished if s.context)
    assert set(per_trace) == sampled, "no span of a dropped transaction was made"
    # intake, event, two steps; then the follow-up's event and its step
    assert set(per_trace.values()) == {6}, per_trace
    assert sum(seen_traced.values()) == KEPT
    assert handled("crm.opportunity.closed_won") - before[0] == DEALS
    assert handled("billing.subscription.activated") - before[1] == DEALS


def test_a_sampler_that_may_keep_a_child_of_a_dropped_parent_gets_every_span() -> None:
    """Only a sampler that drops every child of an unsampled parent lets the hub skip them."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    caught = InMemorySpanExporter()
    sampler = ParentBased(root=ALWAYS_OFF, remote_parent_not_sampled=ALWAYS_ON)
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(caught))
    tracing.install(provider)
    try:
        event = traced(
            new_event("crm.opportunity.closed_won", "contract:C-1"),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )
        with tracing.event_span(event, 1) as run:
            assert run.is_recording(), "the remote parent is unsampled, the sampler keeps it"
            assert tracing.traced_here()
    finally:
        tracing.shutdown()
    assert [s.name for s in caught.get_finished_spans()] == ["event crm.opportunity.closed_won"]


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-b7ad6b7169203331-00",  # no trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-00",  # no span id
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-00",  # not lower-case hex
    ],
)
def test_an_invalid_unsampled_traceparent_starts_a_new_trace(
    traceparent: str, exporter: InMemorySpanExporter
) -> None:
    """The fast reading of a dropped trace's traceparent refuses what the propagator refuses:
    the run then roots a trace of its own (the bucket has a token for it)."""
    event = traced(new_event("crm.opportunity.closed_won", "contract:C-2"), traceparent)
    with tracing.event_span(event, 1) as run:
        assert run.is_recording()
        assert f"{run.get_span_context().trace_id:032x}" != traceparent[3:35].lower()


async def test_an_outbound_call_of_a_dropped_transaction_says_not_sampled_and_starts_nothing(
    exporter: InMemorySpanExporter,
) -> None:
    """No span is made for a dropped transaction's run, but its trace context is in hand: the
    call's ``traceparent`` names the transaction's trace, flagged not sampled, and no trace of
    the call's own is started (the bucket still has tokens, so a root would be kept)."""
    heard: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        heard.append(request.headers.get("traceparent", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ping", echo)
    dropped = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02"
    event = traced(new_event("crm.opportunity.closed_won", "contract:C-3"), dropped)
    async with served(app) as base, aiohttp.ClientSession() as http:
        with tracing.event_span(event, 1) as run:
            assert not run.is_recording() and not tracing.traced_here()
            async with http.get(f"{base}/ping") as answer:
                assert answer.status == 200
        async with http.get(f"{base}/ping") as answer:  # outside any transaction: a root
            assert answer.status == 200
    inside, outside = heard
    assert inside[3:35] == dropped[3:35] and not int(inside[-2:], 16) & 1, inside
    assert outside[3:35] != dropped[3:35] and int(outside[-2:], 16) & 1, outside
    assert [s.name for s in exporter.get_finished_spans()] == ["GET"], "only the root call's"
