"""The hot-path instruments (calls, events handled, rate limits) keep per-thread sums without a
lock: a scrape must show exactly what prometheus_client's own Counter and Histogram would, and
add up every thread's counts, those of threads that have ended too."""

from __future__ import annotations

import random
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quote2cash.observability import metrics

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def series(registry: CollectorRegistry, prefix: str) -> Series:
    """Every sample of the families named ``prefix*`` (``_created`` aside: times differ)."""
    out: Series = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.startswith(prefix) and not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_calls_scrape_as_prometheus_client_s_own_instruments_would() -> None:
    """Same observations into the hub's tables and into a reference Counter and Histogram:
    the same samples, bucket by bucket (an ``le`` bound itself falls in its bucket)."""
    reference = CollectorRegistry()
    calls = Counter("q2c_system_calls", "x", ("system", "operation", "outcome"), registry=reference)
    seconds = Histogram(
        "q2c_system_call_seconds",
        "x",
        ("system", "operation"),
        buckets=metrics._CALL_BUCKETS,
        registry=reference,
    )
    table = metrics._Timed(
        ("q2c_system_calls", "x"),
        ("q2c_system_call_seconds", "x"),
        ("system", "operation"),
        metrics.TIMED_OUTCOMES,
    )
    mine = CollectorRegistry()
    mine.register(table)
    draw = random.Random(12)
    latencies = [*metrics._CALL_BUCKETS, 0.0, 31.0, 1e-9]  # bounds exactly, and past the last
    latencies += [draw.uniform(0, 40) for _ in range(300)]
    for n, latency in enumerate(latencies):
        system = ("crm", "billing", "erp")[n % 3]
        operation = ("upsert", "book_order")[n % 2]
        outcome = metrics.CALL_OUTCOMES[n % 4]
        calls.labels(system, operation, outcome).inc()
        timed = outcome in metrics.TIMED_OUTCOMES
        if timed:
            seconds.labels(system, operation).observe(latency)
        table.add((system, operation, outcome), latency if timed else None)
    expected = series(reference, "q2c_system_call")
    got = series(mine, "q2c_system_call")
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) < 1e-9, key
    assert any(name.endswith("_created") for name in _names(mine)), "counters say since when"


def _names(registry: CollectorRegistry) -> set[str]:
    return {s.name for family in registry.collect() for s in family.samples}


def test_threads_counting_at_once_lose_nothing() -> None:
    table = metrics._Timed(("t_calls", "x"), ("t_seconds", "x"), ("system",), None)
    per_thread, threads = 20_000, 4
    start = threading.Barrier(threads)

    def count(system: str) -> None:
        start.wait()
        for _ in range(per_thread):
            table.add((system, "ok"), 0.01)
            table.add(("shared", "ok"), 0.2)

    workers = [threading.Thread(target=count, args=(f"s{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()  # their tables outlive them
    registry = CollectorRegistry()
    registry.register(table)
    assert registry.get_sample_value("t_calls_total", {"system": "shared", "outcome": "ok"}) == (
        per_thread * threads
    )
    assert registry.get_sample_value("t_calls_total", {"system": "s3", "outcome": "ok"}) == (
        per_thread
    )
    assert registry.get_sample_value("t_seconds_count", {"system": "shared"}) == (
        per_thread * threads
    )
    assert registry.get_sample_value("t_seconds_bucket", {"system": "shared", "le": "0.1"}) == 0
    assert registry.get_sample_value("t_seconds_bucket", {"system": "s0", "le": "0.01"}) == (
        per_thread
    )
    assert len(table.tables._tables) == 0, "ended threads' tables are folded into one"
    table.add(("shared", "ok"), None)  # this thread's own table, alive
    assert registry.get_sample_value("t_calls_total", {"system": "shared", "outcome": "ok"}) == (
        per_thread * threads + 1
    )
    assert registry.get_sample_value("t_seconds_count", {"system": "shared"}) == (
        per_thread * threads
    ), "a count without a time is not observed"


def test_the_breaker_gauge_follows_every_change_and_rate_limits_add_up() -> None:
    metrics.configure(True)
    gauge = ("q2c_breaker_state", {"system": "erp"})
    for state, value in (("open", 2), ("open", 2), ("half_open", 1), ("closed", 0), ("open", 2)):
        metrics.breaker_changed("erp", state)
        assert metrics.REGISTRY.get_sample_value(*gauge) == value, state
    before_tokens = metrics.REGISTRY.get_sample_value(
        "q2c_rate_limit_tokens_used_total", {"system": "billing"}
    )
    before_wait = metrics.REGISTRY.get_sample_value(
        "q2c_rate_limit_wait_seconds_total", {"system": "billing"}
    )
    for waited in (0.0, 0.25, 0.5):
        metrics.rate_limited("billing", waited)
    tokens = metrics.REGISTRY.get_sample_value(
        "q2c_rate_limit_tokens_used_total", {"system": "billing"}
    )
    wait = metrics.REGISTRY.get_sample_value(
        "q2c_rate_limit_wait_seconds_total", {"system": "billing"}
    )
    assert tokens == (before_tokens or 0) + 3
    assert wait == (before_wait or 0) + 0.75
