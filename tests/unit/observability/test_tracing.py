"""When tracing is on, what an outbound URL shows, and the trace ids every JSON log line carries."""

from __future__ import annotations

import json
import logging

import msgspec
import pytest
import yarl

from quote2cash.engine.events import EventValidationError, new_event, validate_envelope
from quote2cash.observability import tracing
from quote2cash.observability.logging import JsonFormatter, correlation
from support.spans import caught_spans, one, span_id, trace_id


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "otlp"),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(
    environ: dict[str, str], wanted: str | None
) -> None:
    assert tracing.tracing_wanted(environ) == wanted


def test_an_unknown_exporter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        tracing.tracing_wanted({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_outbound_urls_show_no_credentials_and_no_query_values() -> None:
    url = yarl.URL(
        "https://hub:pa55word@example.my.salesforce.com/services/data/v61.0/query"
        "?q=SELECT+Id+FROM+Account+WHERE+Email='anna@example.com'&access_token=00Dx!AQ4"
    )
    shown = tracing.outbound_url(url)
    assert shown.startswith("https://example.my.salesforce.com/services/data/v61.0/query?")
    for secret in ("pa55word", "anna@example.com", "00Dx!AQ4", "SELECT"):
        assert secret not in shown
    assert "access_token=" in shown and "q=" in shown
    plain = yarl.URL("http://127.0.0.1:8000/jsonrpc/tryton")
    assert tracing.outbound_url(plain) == "http://127.0.0.1:8000/jsonrpc/tryton"


def line(message: str) -> dict[str, object]:
    record = logging.LogRecord("quote2cash.test", logging.INFO, __file__, 1, message, (), None)
    parsed: dict[str, object] = json.loads(JsonFormatter().format(record))
    return parsed


def test_log_lines_carry_the_trace_and_span_ids_of_the_span_in_hand() -> None:
    with caught_spans() as exporter:
        with correlation("deal-7"), tracing.intake_span("intake crm webhook"):
            inside = line("received")
            with tracing.span("step create billing customer"):
                nested = line("calling billing")
        outside = line("idle")
        spans = exporter.get_finished_spans()
    intake, step = one(spans, "intake crm webhook"), one(spans, "step create billing customer")
    assert inside["correlation_id"] == "deal-7"
    assert (inside["trace_id"], inside["span_id"]) == (
        f"{trace_id(intake):032x}",
        f"{span_id(intake):016x}",
    )
    assert (nested["trace_id"], nested["span_id"]) == (
        f"{trace_id(intake):032x}",
        f"{span_id(step):016x}",
    )
    assert "trace_id" not in outside and "span_id" not in outside


def test_with_tracing_off_spans_are_one_shared_no_op_and_lines_have_no_ids() -> None:
    assert not tracing.enabled()
    first, second = tracing.span("a"), tracing.intake_span("b")
    assert first is second
    with first as current:
        assert not current.is_recording()
        assert "trace_id" not in line("quiet")
    assert tracing.current_traceparent() is None


def test_a_malformed_traceparent_is_refused_at_the_log() -> None:
    good = new_event(
        "crm.opportunity.closed_won",
        "contract:C-1",
        id="e-1",
    )
    validate_envelope(good)
    traced = msgspec.structs.replace(
        good, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    validate_envelope(traced)
    bad = msgspec.structs.replace(good, traceparent="00-not-a-trace")
    with pytest.raises(EventValidationError, match="field 'traceparent'"):
        validate_envelope(bad)
