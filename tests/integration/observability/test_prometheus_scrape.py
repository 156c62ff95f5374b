"""The Prometheus harness against a real exporter: a real Prometheus scrapes prometheus_client's
WSGI app (behind a bearer token) every second, and the shipped FinanceEventDeadLettered alert
fires when a finance event is dead-lettered and resolves when it is no longer."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app

from support.prometheus import running_prometheus

TOKEN = "scrape-token-for-tests"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Exporter:
    """prometheus_client's own app on a real port, answering only ``Bearer TOKEN``."""

    registry: CollectorRegistry
    server: WSGIServer
    answered: dict[int, int] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    metrics = make_wsgi_app(registry)
    answered: dict[int, int] = {}

    def guarded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != f"Bearer {TOKEN}":
            answered[401] = answered.get(401, 0) + 1
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"token required\n"]
        answered[200] = answered.get(200, 0) + 1
        return metrics(environ, start_response)

    server = make_server("127.0.0.1", 0, guarded, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield Exporter(registry, server, answered)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_finance_dead_letter_alert_fires_and_resolves_on_a_real_scrape(
    exporter: Exporter,
) -> None:
    dead_lettered = Gauge(
        "q2c_events_dead_lettered",
        "Events dead-lettered now, not yet replayed or resolved",
        ["event_class"],
        registry=exporter.registry,
    )
    dead_lettered.labels(event_class="finance").set(0)
    dead_lettered.labels(event_class="operational").set(0)

    with running_prometheus(exporter.target, bearer_token=TOKEN) as prometheus:
        prometheus.wait_until(
            lambda: prometheus.query('q2c_events_dead_lettered{event_class="finance"} == 0'),
            "a scrape of the finance gauge at 0",
        )
        assert prometheus.query('up{job="quote2cash"} == 1')
        assert prometheus.alert_states("FinanceEventDeadLettered") == []

        dead_lettered.labels(event_class="finance").set(1)
        prometheus.wait_for_alert("FinanceEventDeadLettered", state="firing")
        (alert,) = [
            a for a in prometheus.alerts() if a["labels"]["alertname"] == "FinanceEventDeadLettered"
        ]
        assert alert["labels"]["severity"] == "page"
        assert alert["labels"]["team"] == "finance-systems"
        assert alert["annotations"]["summary"].startswith("1 finance-sensitive event(s)")
        assert prometheus.alert_states("OperationalEventDeadLettered") == []

        dead_lettered.labels(event_class="finance").set(0)
        prometheus.wait_for_no_alert("FinanceEventDeadLettered")
        assert prometheus.query('q2c_events_dead_lettered{event_class="finance"} == 0')

    assert exporter.answered.get(200, 0) >= 3
    assert exporter.answered.get(401, 0) == 0


def test_without_the_token_the_target_is_down_and_nothing_fires(exporter: Exporter) -> None:
    dead_lettered = Gauge(
        "q2c_events_dead_lettered", "dead letters", ["event_class"], registry=exporter.registry
    )
    dead_lettered.labels(event_class="finance").set(1)

    with running_prometheus(exporter.target, bearer_token="not-the-token") as prometheus:
        prometheus.wait_until(
            lambda: prometheus.query('up{job="quote2cash"} == 0'), "a refused scrape"
        )
        prometheus.wait_for_evaluation("quote2cash-finance", after=datetime.now(UTC))
        assert prometheus.query("q2c_events_dead_lettered") == []
        assert prometheus.alert_states("FinanceEventDeadLettered") == []
    assert exporter.answered.get(401, 0) >= 1
    assert exporter.answered.get(200, 0) == 0
