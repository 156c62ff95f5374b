"""OpenTelemetry traces: one trace per business transaction, from intake to every outbound call.

Tracing is on only when an exporter is configured (see ``tracing_wanted``); otherwise every
``span`` is one shared no-op object and nothing is imported from the SDK. Span attributes never
hold a secret: outbound URLs lose their query values and are redacted, bodies are never recorded,
exception messages are redacted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from quote2cash.observability.redact import MASK, redact

if TYPE_CHECKING:
    import yarl
    from opentelemetry.sdk.trace import TracerProvider

    from quote2cash.engine.events import Event
    from quote2cash.observability.sampling import RateLimitedSampler

log = logging.getLogger("quote2cash.tracing")

SERVICE_NAME = "quote2cash"
TRACER_NAME = "quote2cash"
OUTCOMES = ("done", "retried", "exception", "dead_lettered", "parked", "held")

_HEADER_CAPTURE = (
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
)
"""Header capture would put API keys and session ids in spans: refused."""
_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_children_follow_parent = False
"""True when the sampler is parent-based (and drops what an unsampled parent has): a child of an
unsampled span is never sampled, so it is not made at all (the SDK's span, sampler call and
context managers cost about 45 us), nor are its attributes built."""
_root_bucket: RateLimitedSampler | None = None
"""The shipped sampler's root bucket, when it is the one in use: an intake it has no token for
gets its unsampled traceparent without an SDK span."""
_provider: TracerProvider | None = None
_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)
_HEX_OR_DASH = re.compile(r"[0-9a-f-]*")
_NO_TRACE_ID, _NO_SPAN_ID = "0" * 32, "0" * 16


def _runtime_context_var() -> ContextVar[Context] | None:
    """The variable OpenTelemetry keeps the current context in, when it is the contextvars
    runtime context (the default): a dropped transaction's run sets it directly, one
    ``ContextVar.set`` without the API's layers. None: the API is used."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
        return var
    return None


_CURRENT = _runtime_context_var()


def tracing_wanted(environ: Mapping[str, str] | None = None) -> str | None:
    """The exporter the environment asks for (``otlp`` or ``console``), or None: tracing off.

    Off when ``OTEL_SDK_DISABLED`` is true or ``OTEL_TRACES_EXPORTER`` is ``none``; on with the
    exporter ``OTEL_TRACES_EXPORTER`` names; else on with ``otlp`` when
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; else off.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e]
    if named:
        if "none" in named:
            return None
        for exporter in named:
            if exporter not in ("otlp", "console"):
                raise ValueError(
                    f"OTEL_TRACES_EXPORTER={exporter!r}: expected otlp, console or none"
                )
        return named[0]
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None


def configure() -> bool:
    """Start tracing from the ``OTEL_*`` environment (idempotent); True when it is on.

    The SDK reads the rest itself: ``OTEL_SERVICE_NAME`` (default "quote2cash"),
    ``OTEL_RESOURCE_ATTRIBUTES``, the OTLP endpoint, headers and timeout, ``OTEL_BSP_*`` for
    the batch processor. ``OTEL_TRACES_SAMPLER`` (with ``_ARG``) picks the sampler; unset, the
    hub's own: parent-based, at most ``Q2C_TRACES_PER_SECOND`` new traces a second.
    """
    if _provider is not None:
        return True
    exporter_name = tracing_wanted()
    if exporter_name is None:
        return False
    for name in _HEADER_CAPTURE:
        if os.environ.pop(name, None) is not None:
            log.warning("%s is ignored: the hub's request headers carry credentials", name)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            log.warning("OTLP protocol %r is not supported; exporting http/protobuf", protocol)
        exporter = OTLPSpanExporter()
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    sampler = None  # the SDK's, from OTEL_TRACES_SAMPLER
    if not os.environ.get("OTEL_TRACES_SAMPLER"):
        from quote2cash.observability.sampling import rate_limited_sampler
        from quote2cash.settings import get_settings

        sampler = rate_limited_sampler(get_settings().traces_per_second)
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    log.info("tracing on: exporting spans with %s", exporter_name)
    return True


def install(provider: TracerProvider) -> None:
    """Trace into ``provider`` (tests pass one with an in-memory exporter), outbound aiohttp
    calls included; aiohttp sessions made before this are not traced."""
    global _tracer, _provider, _children_follow_parent, _root_bucket
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    from quote2cash.observability.sampling import RateLimitedSampler

    instrumentor = AioHttpClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider, url_filter=outbound_url)
    _provider = provider
    _tracer = provider.get_tracer(TRACER_NAME)
    _children_follow_parent = _follows_parent(provider.sampler)
    root = getattr(provider.sampler, "_root", None)
    _root_bucket = root if _children_follow_parent and type(root) is RateLimitedSampler else None


def _follows_parent(sampler: object) -> bool:
    """Whether ``sampler`` drops every child of an unsampled parent, local or remote (the
    parent-based samplers ``OTEL_TRACES_SAMPLER`` names, and the hub's own, do)."""
    from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler

    if not isinstance(sampler, ParentBased):
        return False
    for name in ("_local_parent_not_sampled", "_remote_parent_not_sampled"):
        delegate = getattr(sampler, name, None)
        if not (isinstance(delegate, StaticSampler) and delegate._decision is Decision.DROP):
            return False
    return True


def shutdown() -> None:
    """Export what is buffered and stop tracing (the CLI and ``q2c serve`` call this last)."""
    global _tracer, _provider, _children_follow_parent, _root_bucket
    provider, _tracer, _provider = _provider, None, None
    _children_follow_parent, _root_bucket = False, None
    if provider is None:
        return
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    instrumentor = AioHttpClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    provider.shutdown()


def flush(timeout_seconds: float = 30.0) -> bool:
    """Export every span ended so far; False when the exporter did not finish in time."""
    if _provider is None:
        return True
    return _provider.force_flush(int(timeout_seconds * 1000))


def enabled() -> bool:
    return _tracer is not None


def outbound_url(url: yarl.URL) -> str:
    """An outbound call's URL as a span shows it: no credentials, query values masked."""
    shown = url.with_user(None).with_password(None).with_fragment(None)
    if url.query:
        shown = shown.with_query({key: MASK for key in url.query})
    return redact(str(shown))


def context_of(traceparent: str | None) -> Any:
    """The OpenTelemetry context a W3C ``traceparent`` names (an empty one for None)."""
    if not traceparent:
        return trace.set_span_in_context(trace.INVALID_SPAN)
    return _propagator.extract({"traceparent": traceparent})


def traceparent_of(span: Span) -> str | None:
    """A recording span's W3C ``traceparent`` (None for a no-op span)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span in hand, for an event about to be logged."""
    if _tracer is None:
        return None
    return traceparent_of(trace.get_current_span())


def link_to(traceparent: str | None) -> Link | None:
    """A link to the span a ``traceparent`` names (a replay's link to the original)."""
    if not traceparent or _tracer is None:
        return None
    ctx = trace.get_current_span(context_of(traceparent)).get_span_context()
    return Link(ctx) if ctx.is_valid else None


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    traceparent: str | None = None,
    new_trace: bool = False,
    links: Sequence[Link | None] = (),
    kind: SpanKind = SpanKind.INTERNAL,
) -> contextlib.AbstractContextManager[Span]:
    """A current span: a child of the span in hand, or of ``traceparent``, or a new trace's
    root (``new_trace``). An exception leaving it sets status ERROR, its message redacted."""
    if _tracer is None:
        return _NO_SPAN
    unsampled = _unsampled_parent(traceparent, new_trace)
    if unsampled is not None:
        return unsampled
    parent = context_of(traceparent) if (traceparent or new_trace) else None
    return _live_span(_tracer, name, attributes, parent, links, kind)


def _unsampled_parent(
    traceparent: str | None, new_trace: bool
) -> contextlib.AbstractContextManager[Span] | None:
    """Under a parent-based sampler, the parent (``traceparent``'s span, else the one in hand
    unless ``new_trace``) as the current span when it is valid and not sampled: no SDK span is
    made (it would be dropped) and the trace goes on through the parent, so what the block emits
    or calls still carries it. None when a span must be made."""
    if not _children_follow_parent:
        return None
    if traceparent:
        remote = _unsampled_remote(traceparent)
        return None if remote is None else _InHand(remote)
    if new_trace:
        return None
    in_hand = trace.get_current_span()
    context = in_hand.get_span_context()
    if not context.is_valid or context.trace_flags.sampled:
        return None
    return contextlib.nullcontext(in_hand)


def _unsampled_remote(traceparent: str) -> NonRecordingSpan | None:
    """The span a plain (version 00) ``traceparent`` names when its sampled flag is off, checked
    without the propagator or a regex and its ids read only when asked for; None when it is
    sampled, or not plain (the propagator reads it), or names no trace or span."""
    if (
        len(traceparent) != 55
        or traceparent[-1] not in "02468ace"  # the sampled flag is the last hex digit's low bit
        or not traceparent.startswith("00-")
        or traceparent[35] != "-"
        or traceparent[52] != "-"
        or traceparent.count("-") != 3
        or _HEX_OR_DASH.fullmatch(traceparent) is None  # lower-case hex between the dashes
        or traceparent[3:35] == _NO_TRACE_ID
        or traceparent[36:52] == _NO_SPAN_ID
    ):
        return None
    return _Unsampled(traceparent)


class _Unsampled(NonRecordingSpan):
    """A dropped transaction's span, named by its checked plain ``traceparent``: its ids are
    parsed when first asked for (a log line, an emitted event, an outbound call), not per run."""

    def __init__(self, traceparent: str) -> None:  # no super().__init__: no context yet
        self._traceparent = traceparent
        self._parsed: SpanContext | None = None

    def get_span_context(self) -> SpanContext:
        parsed = self._parsed
        if parsed is None:
            tp = self._traceparent
            parsed = self._parsed = SpanContext(
                int(tp[3:35], 16), int(tp[36:52], 16), True, TraceFlags(int(tp[53:], 16))
            )
        return parsed

    @property
    def _context(self) -> SpanContext:  # type: ignore[override]
        return self.get_span_context()


class _InHand:
    """``trace.use_span`` for a span that records nothing: current within the block, no more
    (no exception bookkeeping, no generator)."""

    __slots__ = ("_span", "_token")

    def __init__(self, current: Span) -> None:
        self._span = current
        self._token: Any = None

    def __enter__(self) -> Span:
        if _CURRENT is None:
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        else:
            self._token = _CURRENT.set(Context({**_CURRENT.get(), _SPAN_KEY: self._span}))
        return self._span

    def __exit__(self, *_exc: object) -> None:
        if _CURRENT is None:
            otel_context.detach(self._token)
        else:
            _CURRENT.reset(self._token)


def _span_in_hand() -> Span:
    """``trace.get_current_span()``, read from the runtime context's variable when it can be."""
    if _CURRENT is None:
        return trace.get_current_span()
    current = _CURRENT.get().get(_SPAN_KEY)
    return current if isinstance(current, Span) else trace.INVALID_SPAN


def traced_here() -> bool:
    """Whether a span started under the span in hand could be recorded: False when tracing is
    off, or under a parent-based sampler when the span in hand is an unsampled trace's (a
    caller that makes many such spans, one per step, may then skip them all)."""
    if _tracer is None:
        return False
    if not _children_follow_parent:
        return True
    in_hand = _span_in_hand()
    if type(in_hand) is _Unsampled:
        return False
    context = in_hand.get_span_context()
    return not context.is_valid or context.trace_flags.sampled


@contextlib.contextmanager
def _live_span(
    tracer: trace.Tracer,
    name: str,
    attributes: Mapping[str, Any] | None,
    parent: Context | None,
    links: Sequence[Link | None],
    kind: SpanKind,
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=dict(attributes or {}),
        links=[link for link in links if link is not None],
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            record_failure(exc, current)
            raise


def record_failure(exc: BaseException, current: Span | None = None) -> None:
    """Mark the span (default: the one in hand) failed with ``exc``, its text redacted."""
    target = current or trace.get_current_span()
    if not target.is_recording():
        return
    message = redact(str(exc))
    target.record_exception(
        exc, attributes={"exception.message": message, "exception.stacktrace": ""}
    )
    target.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:500]))


def event_attributes(event: Event) -> dict[str, Any]:
    """What every event's span says about it (never its data)."""
    return {
        "q2c.correlation_id": event.correlation_id,
        "q2c.subject": event.subject,
        "q2c.event_type": event.type,
        "q2c.event_id": event.id,
    }


def event_span(event: Event, attempt: int) -> contextlib.AbstractContextManager[Span]:
    """The worker's span for one run of ``event``: in the trace its ``traceparent`` names (the
    intake's), so every retry and later run joins the same trace; a new trace without one."""
    if _tracer is None:
        return _NO_SPAN
    if _children_follow_parent and event.traceparent:
        remote = _unsampled_remote(event.traceparent)
        if remote is not None:  # decided once, from the envelope: nothing is built for it
            return _InHand(remote)
    return _live_span(
        _tracer,
        f"event {event.type}",
        {**event_attributes(event), "q2c.attempt": attempt},
        context_of(event.traceparent),
        (),
        SpanKind.CONSUMER,
    )


def step_span(
    event: Event, step: str, system: str | None
) -> contextlib.AbstractContextManager[Span]:
    """A handler step's span, a child of its event's; outbound calls made in it are its children."""
    if _tracer is None:
        return _NO_SPAN
    unsampled = _unsampled_parent(None, False)
    if unsampled is not None:
        return unsampled
    return _live_span(
        _tracer,
        f"step {step}",
        {**event_attributes(event), "q2c.step": step, "q2c.system": system or "none"},
        None,
        (),
        SpanKind.INTERNAL,
    )


def intake_span(
    name: str, attributes: Mapping[str, Any] | None = None, *, links: Sequence[Link | None] = ()
) -> contextlib.AbstractContextManager[Span]:
    """The root of a business transaction's trace: a webhook, a poll, an API call."""
    return span(name, attributes, new_trace=True, links=links, kind=SpanKind.SERVER)


def describe_intake(event: Event, *, duplicate: bool = False) -> None:
    """Name the event taken in on the intake span in hand (a redelivery says so: its event's
    trace is the first delivery's)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes({**event_attributes(event), "q2c.duplicate": duplicate})


def _stamped(event: Event, traceparent: str | None) -> Event:
    if traceparent is None:
        return event
    import msgspec

    return msgspec.structs.replace(event, traceparent=traceparent)


def start_intake(events: Sequence[Event], via: str) -> tuple[list[Event], list[Span | None]]:
    """Give each event its own trace, rooted in an intake span linked to the span in hand (a
    poll): one trace per business transaction, not one per poll. End them with ``end_intake``.
    An event whose trace the shipped sampler would drop gets its traceparent (flags: not
    sampled) without an SDK span."""
    if _tracer is None:
        return list(events), [None] * len(events)
    poll = link_to(current_traceparent())
    out: list[Event] = []
    spans: list[Span | None] = []
    for event in events:
        if event.traceparent is not None:
            out.append(event)
            spans.append(None)
            continue
        if _root_bucket is not None and not _root_bucket.has_token():
            out.append(_stamped(event, _unsampled_traceparent()))
            spans.append(None)
            continue
        root = _tracer.start_span(
            f"intake {event.type}",
            context=context_of(None),
            kind=SpanKind.SERVER,
            attributes={**event_attributes(event), "q2c.via": via},
            links=[poll] if poll is not None else [],
        )
        out.append(_stamped(event, traceparent_of(root)))
        spans.append(root)
    return out, spans


def _unsampled_traceparent() -> str:
    """A new trace's traceparent, flagged not sampled, with ids as the SDK would make them."""
    assert _provider is not None
    ids = _provider.id_generator
    flags = TraceFlags.RANDOM_TRACE_ID if ids.is_trace_id_random() else TraceFlags.DEFAULT
    return f"00-{ids.generate_trace_id():032x}-{ids.generate_span_id():016x}-{flags:02x}"


def end_intake(spans: Sequence[Span | None], duplicates: Sequence[bool]) -> None:
    """End the intake spans of the events logged new; a duplicate's is dropped unexported (its
    event keeps the trace it was first logged with)."""
    for root, duplicate in zip(spans, duplicates, strict=True):
        if root is not None and not duplicate:
            root.end()


def set_outcome(current: Span, outcome: str) -> None:
    current.set_attribute("q2c.outcome", outcome)


def log_ids() -> tuple[str, str] | None:
    """The trace and span ids (hex) of the span in hand, for a log line."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
