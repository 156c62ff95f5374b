"""A signed webhook starts its deal's trace: the intake span is the root, the logged event carries
its traceparent, and a redelivery is a span of its own that says it was a duplicate."""

from __future__ import annotations

import json

import aiohttp

from quote2cash.api.app import build_app
from quote2cash.api.signatures import SIGNATURE_HEADER
from quote2cash.engine.runtime import Runtime
from support.spans import caught_spans, named, traceparent

from .conftest import callout_signature, logged, served

SECRET = "q2c-api-callout-secret"


async def test_a_callout_starts_the_trace_its_event_carries(
    runtime: Runtime, http: aiohttp.ClientSession
) -> None:
    body = json.dumps(
        {
            "messageId": "m-1",
            "eventType": "opportunity.closed_won",
            "eventTime": "2026-12-06T09:00:00+00:00",
            "opportunity": {"Id": "006TRACE01", "Contract_Number__c": "CN-TR-1"},
        }
    ).encode()
    with caught_spans() as exporter:
        async with served(build_app(runtime, callout_secret=SECRET)) as base:
            for _ in range(2):
                async with http.post(
                    f"{base}/webhooks/salesforce",
                    data=body,
                    headers={
                        SIGNATURE_HEADER: callout_signature(body, SECRET),
                        "Content-Type": "application/json",
                    },
                ) as answer:
                    assert answer.status == 200
        spans = exporter.get_finished_spans()

    first, again = named(spans, "intake crm webhook")
    [row] = logged(runtime, event_id="closed_won:006TRACE01")
    assert row.traceparent == traceparent(first)
    assert first.parent is None and again.parent is None
    assert first.context is not None and again.context is not None
    assert first.context.trace_id != again.context.trace_id
    for span, duplicate in ((first, False), (again, True)):
        attributes = dict(span.attributes or {})
        assert attributes["q2c.event_id"] == "closed_won:006TRACE01"
        assert attributes["q2c.subject"] == "contract:CN-TR-1"
        assert attributes["q2c.via"] == "webhook"
        assert attributes["q2c.duplicate"] is duplicate
