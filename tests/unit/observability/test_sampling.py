"""The default sampler: every new trace at day-to-day pace, at most N a second in a burst, and a
span always follows its parent's decision (a trace is whole or absent)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from quote2cash.observability import tracing
from quote2cash.observability.sampling import RateLimitedSampler, rate_limited_sampler
from quote2cash.settings import get_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def roots_sampled(sampler: RateLimitedSampler, count: int) -> int:
    return sum(
        sampler.should_sample(None, trace_id, "intake").decision is Decision.RECORD_AND_SAMPLE
        for trace_id in range(1, count + 1)
    )


def test_a_burst_records_one_second_s_worth_then_the_rate() -> None:
    clock = Clock()
    sampler = RateLimitedSampler(10, clock)
    assert roots_sampled(sampler, 500) == 10, "a burst takes the bucket, no more"
    clock.now += 0.05
    assert roots_sampled(sampler, 100) == 0, "half a token is not a trace"
    clock.now += 0.05
    assert roots_sampled(sampler, 100) == 1
    total = 0
    for _ in range(300):  # 30 s at 1,000 new transactions a second
        clock.now += 0.1
        total += roots_sampled(sampler, 100)
    assert total == 300, "10 a second, whatever the load"


def test_at_day_to_day_pace_every_transaction_is_traced() -> None:
    clock = Clock()
    sampler = RateLimitedSampler(10, clock)
    kept = 0
    for _ in range(600):  # five a second for two minutes
        clock.now += 0.2
        kept += roots_sampled(sampler, 1)
    assert kept == 600


def test_the_clock_going_back_does_not_refill_and_zero_records_none() -> None:
    clock = Clock()
    sampler = RateLimitedSampler(2, clock)
    assert roots_sampled(sampler, 5) == 2
    clock.now -= 50
    assert roots_sampled(sampler, 5) == 0
    clock.now += 0.5
    assert roots_sampled(sampler, 5) == 1
    none = RateLimitedSampler(0, clock)
    clock.now += 3600
    assert roots_sampled(none, 5) == 0
    with pytest.raises(ValueError, match="expected 0 or more"):
        RateLimitedSampler(-1)


@pytest.fixture
def provider_with_empty_bucket() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    clock = Clock()
    sampler = rate_limited_sampler(1, clock)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_children_follow_their_parent_whatever_the_bucket_holds(
    provider_with_empty_bucket: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = provider_with_empty_bucket
    with tracer.start_as_current_span("intake first") as kept:
        assert kept.is_recording()
        for n in range(20):  # the bucket (one a second) is empty now: children still recorded
            with tracer.start_as_current_span(f"step {n}") as child:
                assert child.is_recording()
    with tracer.start_as_current_span("intake second") as dropped:
        assert not dropped.is_recording()
        assert dropped.get_span_context().is_valid, "a dropped trace still has ids to propagate"
        with tracer.start_as_current_span("step of the dropped") as child:
            assert not child.is_recording()
    # a caller's sampled traceparent is followed even with the bucket empty
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    context = trace.set_span_in_context(NonRecordingSpan(caller))
    with tracer.start_as_current_span("webhook", context=context) as followed:
        assert followed.is_recording()
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == sorted(["intake first", "webhook", *(f"step {n}" for n in range(20))])


def test_a_dropped_event_s_traceparent_says_not_sampled_and_its_run_follows(
    provider_with_empty_bucket: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    """The event log keeps a dropped trace's traceparent with flags 00: the worker's run of the
    event, later and in another process, is not recorded either."""
    tracer, _ = provider_with_empty_bucket
    first = tracer.start_span("intake one", context=tracing.context_of(None))
    second = tracer.start_span("intake two", context=tracing.context_of(None))
    kept, dropped = tracing.traceparent_of(first), tracing.traceparent_of(second)
    assert kept is not None and int(kept[-2:], 16) & 1 == 1, kept
    assert dropped is not None and int(dropped[-2:], 16) & 1 == 0, dropped
    with tracer.start_as_current_span("event run", context=tracing.context_of(dropped)) as run:
        assert not run.is_recording()
    with tracer.start_as_current_span("event run", context=tracing.context_of(kept)) as run:
        assert run.is_recording()


def test_the_hub_makes_no_span_under_an_unsampled_parent_and_its_trace_goes_on() -> None:
    """``tracing.span`` skips the SDK under a parent-based sampler's unsampled parent (the span
    would be dropped anyway), keeps the parent's trace current so what the block emits carries
    it, and still records every span of a sampled trace."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=rate_limited_sampler(1, Clock()))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        with tracing.span("intake kept", new_trace=True):
            kept = tracing.traceparent_of(trace.get_current_span())
            with tracing.span("step of kept") as step:
                assert step.is_recording()
        with tracing.span("intake dropped", new_trace=True) as root:
            assert not root.is_recording()
            dropped = root.get_span_context()
            with tracing.span("step of dropped") as step:
                assert step is root, "no new span under an unsampled parent"
        dropped_parent = tracing.traceparent_of(root)
        assert dropped_parent is not None
        with tracing.span("event run", traceparent=dropped_parent) as run:
            assert not run.is_recording()
            assert trace.get_current_span().get_span_context().trace_id == dropped.trace_id
            with tracing.span("step of run") as step:
                assert step.get_span_context().trace_id == dropped.trace_id
        with tracing.span("event run kept", traceparent=kept) as run:
            assert run.is_recording()
    finally:
        tracing.shutdown()
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["event run kept", "intake kept", "step of kept"]


@pytest.mark.parametrize(
    ("environ", "description"),
    [
        ({}, "ParentBased{root:RateLimited{10/s}"),
        ({"Q2C_TRACES_PER_SECOND": "2.5"}, "ParentBased{root:RateLimited{2.5/s}"),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, "ParentBased{root:AlwaysOnSampler"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            "TraceIdRatioBased{0.25}",
        ),
    ],
)
def test_configure_uses_the_hub_s_sampler_unless_otel_names_one(
    environ: dict[str, str], description: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("Q2C_TRACES_PER_SECOND", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        assert tracing.configure()
        provider = tracing._provider
        assert provider is not None
        assert provider.sampler.get_description().startswith(description)
    finally:
        tracing.shutdown()
        get_settings.cache_clear()


def test_a_dropped_run_is_the_envelope_s_trace_through_the_public_api() -> None:
    """A dropped transaction's run reads its ``traceparent`` lazily and sets the context
    variable directly: what the OpenTelemetry API, a log line, an emitted event and a child
    span see inside it is the envelope's trace and span, flagged not sampled; outside, nothing."""
    from quote2cash.engine.events import new_event
    from quote2cash.observability.logging import JsonFormatter

    assert tracing._CURRENT is not None, "the fast path is in use with this OpenTelemetry"
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=rate_limited_sampler(1, Clock()))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02"
    event = msgspec.structs.replace(
        new_event("crm.opportunity.closed_won", "contract:C-9"), traceparent=parent
    )
    line = logging.LogRecord("t", logging.INFO, __file__, 1, "in the run", None, None)
    try:
        with tracing.event_span(event, 1) as run:
            assert not run.is_recording() and not tracing.traced_here()
            seen = trace.get_current_span().get_span_context()
            assert (seen.trace_id, seen.span_id) == (
                0x0AF7651916CD43DD8448EB211C80319C,
                0xB7AD6B7169203331,
            )
            assert seen.is_remote and seen.is_valid and int(seen.trace_flags) == 2
            assert tracing.current_traceparent() == parent
            logged = json.loads(JsonFormatter().format(line))
            assert (logged["trace_id"], logged["span_id"]) == (parent[3:35], parent[36:52])
            with tracing.span("step of the run") as step:
                assert step.get_span_context().trace_id == seen.trace_id
        assert not trace.get_current_span().get_span_context().is_valid
        assert tracing.current_traceparent() is None
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()
