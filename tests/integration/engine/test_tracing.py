"""Traces through the real engine: the intake span starts the trace, each run of an event is a
span in it (retries too), each step a child, each outbound call a child of its step; the
``traceparent`` goes through the log and back on SQLite and PostgreSQL; a replay starts a new
trace linked to the original."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.control import pause_system
from quote2cash.engine.errors import DataError, TransientError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.replay import Selector, approve_replay, request_replay
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.observability import tracing
from quote2cash.store.schema import events
from support.identity import first_admin, new_operator
from support.spans import caught_spans, named, one, parent_id, span_id, trace_id, traceparent

SECRET_KEY = "sk_test_TraceSecret42"
WON = "crm.opportunity.closed_won"


@asynccontextmanager
async def customer_api() -> AsyncIterator[str]:
    """A real HTTP server standing in for a target system's customer endpoint."""

    async def customers(request: web.Request) -> web.Response:
        return web.json_response({"id": "cus_1", "email": request.query.get("email")})

    app = web.Application()
    app.router.add_get("/v1/customers", customers)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def stored_traceparent(runtime: Runtime, event_id: str) -> str | None:
    with runtime.engine.connect() as conn:
        return conn.execute(
            select(events.c.traceparent).where(events.c.event_id == event_id)
        ).scalar_one()


def take_in(runtime: Runtime, event: Event) -> str:
    """Log ``event`` as a webhook would, inside its intake span; that span's traceparent."""
    with tracing.intake_span("intake crm webhook", {"q2c.via": "webhook"}) as intake:
        runtime.log.append(event)
    parent = tracing.traceparent_of(intake)
    assert parent is not None
    return parent


async def test_one_trace_from_intake_through_steps_calls_and_follow_ups(
    runtime: Runtime,
) -> None:
    registry = Registry()
    async with customer_api() as api:

        @registry.on(WON)
        async def won(ctx: HandlerContext, event: Event) -> None:
            async def create_customer(key: str) -> dict[str, str]:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(
                        f"{api}/v1/customers",
                        params={"api_key": SECRET_KEY, "email": "anna@example.com"},
                    ) as answer,
                ):
                    return dict(await answer.json())

            await ctx.step("billing.create_customer", create_customer)
            await ctx.local_step("choose entity", lambda key: "DE")
            ctx.emit("q2c.deal.booked", event.subject, {"entity": "DE"}, key="booked")

        @registry.on("q2c.deal.booked")
        async def booked(ctx: HandlerContext, event: Event) -> None:
            return None

        with caught_spans() as exporter:
            deal = new_event(WON, "contract:C-1", {"id": "006A"}, correlation_id="deal-1")
            parent = take_in(runtime, deal)
            report = await Worker(runtime, registry).drain()
            spans = exporter.get_finished_spans()

    assert report.processed == 2
    intake = one(spans, "intake crm webhook")
    assert intake.parent is None
    assert stored_traceparent(runtime, deal.id) == parent == traceparent(intake)
    [logged] = runtime.log.history("contract:C-1", [WON])
    assert logged.traceparent == parent

    run = one(spans, f"event {WON}")
    assert (trace_id(run), parent_id(run)) == (trace_id(intake), span_id(intake))
    assert run.kind == SpanKind.CONSUMER
    assert dict(run.attributes or {}) == {
        "q2c.correlation_id": "deal-1",
        "q2c.subject": "contract:C-1",
        "q2c.event_type": WON,
        "q2c.event_id": deal.id,
        "q2c.attempt": 1,
        "q2c.outcome": "done",
    }

    customer = one(spans, "step billing.create_customer")
    entity = one(spans, "step choose entity")
    assert parent_id(customer) == parent_id(entity) == span_id(run)
    assert customer.attributes is not None and entity.attributes is not None
    assert (customer.attributes["q2c.system"], entity.attributes["q2c.system"]) == (
        "billing",
        "none",
    )
    assert customer.attributes["q2c.correlation_id"] == "deal-1"

    [call] = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert parent_id(call) == span_id(customer) and trace_id(call) == trace_id(intake)
    shown = json.dumps([dict(s.attributes or {}) for s in spans])
    assert SECRET_KEY not in shown and "anna@example.com" not in shown
    assert "/v1/customers" in shown

    follow = one(spans, "event q2c.deal.booked")
    assert (trace_id(follow), parent_id(follow)) == (trace_id(intake), span_id(run))


async def test_retries_resume_the_same_trace(runtime: Runtime, clock: ManualClock) -> None:
    registry = Registry()
    calls = {"n": 0}

    @registry.on(WON, retry=RetryPolicy(max_attempts=3, base_seconds=1.0))
    async def won(ctx: HandlerContext, event: Event) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError(f"ERP timed out (api_key={SECRET_KEY})", system="erp")

    with caught_spans() as exporter:
        take_in(runtime, new_event(WON, "contract:C-2", correlation_id="deal-2"))
        worker = Worker(runtime, registry)
        await worker.drain()
        clock.advance(2.0)
        await worker.drain()
        spans = exporter.get_finished_spans()

    intake = one(spans, "intake crm webhook")
    runs = named(spans, f"event {WON}")
    assert [(r.attributes or {}).get("q2c.outcome") for r in runs] == ["retried", "done"]
    assert [(r.attributes or {}).get("q2c.attempt") for r in runs] == [1, 2]
    assert {(trace_id(r), parent_id(r)) for r in runs} == {(trace_id(intake), span_id(intake))}
    failed, passed = runs
    assert failed.status.status_code == StatusCode.ERROR
    assert passed.status.status_code == StatusCode.UNSET
    [raised] = [e for e in failed.events if e.name == "exception"]
    assert raised.attributes is not None
    assert str(raised.attributes["exception.type"]).endswith(".TransientError")
    assert "ERP timed out" in str(raised.attributes["exception.message"])
    assert SECRET_KEY not in json.dumps(dict(raised.attributes))
    assert SECRET_KEY not in str(failed.status.description)


async def test_every_outcome_is_named_on_the_event_span(runtime: Runtime) -> None:
    registry = Registry(default_retry=RetryPolicy(max_attempts=1))
    ops = new_operator(runtime, first_admin(runtime), "olga", "operator")

    @registry.on("crm.account.invalid")
    async def invalid(ctx: HandlerContext, event: Event) -> None:
        raise DataError("field 'tax_id' missing; expected a VAT number", system="erp")

    @registry.on("crm.account.flaky")
    async def flaky(ctx: HandlerContext, event: Event) -> None:
        raise TransientError("ERP answered 503", system="erp")

    @registry.on("crm.amendment.early")
    async def early(ctx: HandlerContext, event: Event) -> None:
        ctx.park("activation:C-9", "waits for activation", deadline=timedelta(hours=1))

    @registry.on("erp.booking.requested", systems=("erp",))
    async def booking(ctx: HandlerContext, event: Event) -> None:
        return None

    with caught_spans() as exporter:
        for i, type_ in enumerate(
            ["crm.account.invalid", "crm.account.flaky", "crm.amendment.early"]
        ):
            runtime.log.append(new_event(type_, f"s-{i}"))
        await Worker(runtime, registry).drain()
        pause_system(runtime, "erp", by=ops, reason="month-end close")
        runtime.log.append(new_event("erp.booking.requested", "s-9"))
        await Worker(runtime, registry).drain()
        spans = exporter.get_finished_spans()

    outcomes = {s.name: (s.attributes or {}).get("q2c.outcome") for s in spans}
    assert outcomes == {
        "event crm.account.invalid": "exception",
        "event crm.account.flaky": "dead_lettered",
        "event crm.amendment.early": "parked",
        "event erp.booking.requested": "held",
    }
    # No intake span: each event without a traceparent starts its own trace.
    assert all(s.parent is None for s in spans)
    assert len({trace_id(s) for s in spans}) == 4


@pytest.mark.parametrize("include_processed", [False, True], ids=["dead letter", "processed"])
async def test_a_replay_starts_a_new_trace_linked_to_the_original(
    runtime: Runtime, include_processed: bool
) -> None:
    registry = Registry(default_retry=RetryPolicy(max_attempts=1))
    runs = {"n": 0}

    @registry.on(WON)
    async def won(ctx: HandlerContext, event: Event) -> None:
        runs["n"] += 1
        if runs["n"] == 1 and not include_processed:
            raise TransientError("ERP answered 503", system="erp")

    admin = first_admin(runtime)
    maria = new_operator(runtime, admin, "maria", "operator")
    omar = new_operator(runtime, admin, "omar", "operator")
    with caught_spans() as exporter:
        deal = new_event(WON, "contract:C-3", correlation_id="deal-3")
        original = take_in(runtime, deal)
        await Worker(runtime, registry).drain()
        selector = Selector(event_ids=(deal.id,), include_processed=include_processed)
        req = request_replay(runtime, selector, by=maria, reason="ERP is back")
        approve_replay(runtime, req.id, by=omar)
        await Worker(runtime, registry).drain()
        spans = exporter.get_finished_spans()

    intake = one(spans, "intake crm webhook")
    replay = one(spans, f"replay {WON}")
    assert replay.parent is None and trace_id(replay) != trace_id(intake)
    assert [traceparent_of_link(link) for link in replay.links] == [original]
    assert (replay.attributes or {})["q2c.replay_request"] == req.id
    first, again = named(spans, f"event {WON}")
    assert parent_id(first) == span_id(intake)
    assert (trace_id(again), parent_id(again)) == (trace_id(replay), span_id(replay))
    assert (again.attributes or {})["q2c.outcome"] == "done"
    assert (again.attributes or {})["q2c.correlation_id"] == "deal-3"


def traceparent_of_link(link: object) -> str:
    context = link.context  # type: ignore[attr-defined]
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


async def test_tracing_off_costs_no_span_and_logs_no_traceparent(runtime: Runtime) -> None:
    registry = Registry()
    seen: list[str | None] = []

    @registry.on(WON)
    async def won(ctx: HandlerContext, event: Event) -> None:
        seen.append(tracing.current_traceparent())
        ctx.emit("q2c.deal.booked", event.subject, key="booked")

    @registry.on("q2c.deal.booked")
    async def booked(ctx: HandlerContext, event: Event) -> None:
        return None

    assert not tracing.enabled()
    with tracing.intake_span("intake crm webhook") as intake:
        assert not intake.is_recording()
        runtime.log.append(new_event(WON, "contract:C-4"))
    await Worker(runtime, registry).drain()
    with runtime.engine.connect() as conn:
        stored = conn.execute(select(events.c.traceparent)).scalars().all()
    assert seen == [None] and stored == [None, None]


def test_a_poll_gives_each_new_event_its_own_trace_linked_to_the_poll(runtime: Runtime) -> None:
    from quote2cash.flows.intake import _new

    first = new_event(WON, "contract:C-5", id="closed_won:006P1", source="crm")
    second = new_event(WON, "contract:C-6", id="closed_won:006P2", source="crm")
    with caught_spans() as exporter:
        with tracing.intake_span("poll crm", {"q2c.via": "poll"}):
            assert _new(runtime, [first, second]) == 2
        with tracing.intake_span("poll crm", {"q2c.via": "poll"}):
            assert _new(runtime, [first]) == 0  # heard again: the log keeps its first trace
        spans = exporter.get_finished_spans()

    polls = named(spans, "poll crm")
    intakes = named(spans, f"intake {WON}")
    assert [(s.attributes or {})["q2c.event_id"] for s in intakes] == [first.id, second.id]
    assert len({trace_id(s) for s in intakes} | {trace_id(polls[0])}) == 3
    for intake, event in zip(intakes, (first, second), strict=True):
        assert intake.parent is None
        assert [link.context.span_id for link in intake.links] == [span_id(polls[0])]
        assert stored_traceparent(runtime, event.id) == traceparent(intake)
