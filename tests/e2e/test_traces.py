"""One Closed-Won deal through the real sandbox yields ONE trace, exported over OTLP/HTTP to a
real receiver: its intake span, the deal's event, each step the engine recorded, and the
outbound calls to Salesforce, Stripe and Tryton, each under the step that made it."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from quote2cash.engine.queries import failed_events
from quote2cash.observability import tracing
from quote2cash.sandbox.otlp import OtlpReceiver, ReceivedSpan
from quote2cash.settings import get_settings
from quote2cash.store.schema import events, steps

WON = "crm.opportunity.closed_won"
CLIENT = 3  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_CLIENT
ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver, and the hub's tracing configured from OTEL_* to export to it
    (before the hub's connectors open their sessions, so their calls are traced)."""
    otlp = OtlpReceiver()
    otlp.start()
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.traces_endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    # the shipped sampler, its rate above this test's bursts of polled events: every trace kept
    monkeypatch.setenv("Q2C_TRACES_PER_SECOND", "1000")
    get_settings.cache_clear()
    assert tracing.configure()
    try:
        yield otlp
    finally:
        tracing.shutdown()
        otlp.stop()
        get_settings.cache_clear()


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def url_of(span: ReceivedSpan) -> str:
    return str(span.attributes.get("url.full") or span.attributes.get("http.url") or "")


async def test_a_closed_won_deal_is_one_trace_from_intake_to_every_system(
    receiver: OtlpReceiver, world: World, hub: Hub
) -> None:
    desk = world.desk
    products = sf_products(desk)
    account = desk.account(
        "Traced Tools GmbH",
        currency="EUR",
        BillingStreet="Hafenstr. 1",
        BillingCity="Hamburg",
        BillingPostalCode="20457",
        BillingCountryCode="DE",
        BillingCountry="Germany",
    )
    desk.deal(
        account,
        "EUR",
        [Line(products["PLAT-SEAT"], 3, "45.00")],
        name="Traced platform",
        Contract_Number__c="C-TR-0001",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == []
    assert tracing.flush()

    with hub.runtime.engine.connect() as conn:
        deal = conn.execute(
            select(events.c.pos, events.c.event_id, events.c.traceparent).where(
                events.c.type == WON
            )
        ).one()
        recorded = conn.execute(
            select(steps.c.name, steps.c.system).where(steps.c.event_pos == deal.pos)
        ).all()
    assert deal.traceparent is not None
    trace_id = deal.traceparent.split("-")[1]

    spans = receiver.received()
    assert {s.service for s in spans} == {"quote2cash"}
    [run] = [s for s in spans if s.name == f"event {WON}"]
    assert run.trace_id == trace_id
    assert run.attributes["q2c.event_id"] == deal.event_id
    assert run.attributes["q2c.outcome"] == "done"
    assert run.attributes["q2c.subject"] == "contract:C-TR-0001"
    deal_traces = {s.trace_id for s in spans if s.attributes.get("q2c.event_id") == deal.event_id}
    assert deal_traces == {trace_id}, "the deal's spans are in more than one trace"

    trace = {s.span_id: s for s in spans if s.trace_id == trace_id}
    [intake] = [s for s in trace.values() if s.parent_span_id is None]
    assert intake.name == f"intake {WON}" and intake.attributes["q2c.via"] == "poll"
    assert run.parent_span_id == intake.span_id

    step_spans = {s.name: s for s in trace.values() if s.name.startswith("step ")}
    assert recorded, "the deal recorded no steps"
    for name, system in recorded:
        span = step_spans.get(f"step {name}")
        assert span is not None, f"no span for step {name!r}: {sorted(step_spans)}"
        assert span.attributes["q2c.system"] == (system or "none")
        assert span.attributes["q2c.correlation_id"] == run.attributes["q2c.correlation_id"]

    calls = [s for s in trace.values() if s.kind == CLIENT]
    hosts = {
        "crm": host_of(world.sf_url),
        "billing": host_of(world.stripe_url),
        "erp": host_of(world.erp.base_url),
    }
    for system, host in hosts.items():
        under_steps = [
            c
            for c in calls
            if host_of(url_of(c)) == host
            and trace[c.parent_span_id or ""].name.startswith("step ")
            and trace[c.parent_span_id or ""].attributes["q2c.system"] == system
        ]
        assert under_steps, f"no outbound call to {system} ({host}) under a {system} step"
    for call in calls:
        assert host_of(url_of(call)) in hosts.values()
        ancestor = trace[call.parent_span_id or ""]
        while ancestor.parent_span_id not in (None, intake.span_id):
            ancestor = trace[ancestor.parent_span_id or ""]
        assert ancestor.name.startswith("event "), f"{call.name} is not under an event span"
    assert not [s for s in trace.values() if s.status_code == ERROR and s.kind != CLIENT]
    shown = repr([s.attributes for s in spans])
    assert "sk_test_" not in shown and "Bearer" not in shown
