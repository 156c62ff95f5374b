"""Per-system call figures read from real prometheus_client instruments of the hub's names."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from quote2cash.console.call_figures import read_call_figures


def instruments() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    calls = Counter("q2c_system_calls", "c", ("system", "operation", "outcome"), registry=registry)
    seconds = Histogram(
        "q2c_system_call_seconds", "s", ("system", "operation"), buckets=(0.1, 1.0),
        registry=registry,
    )  # fmt: skip
    return registry, calls, seconds


def test_figures_add_up_over_operations_per_system() -> None:
    registry, calls, seconds = instruments()
    for op, outcome, n in (("book_order", "ok", 6), ("post_invoice", "ok", 2),
                           ("post_invoice", "transient", 1), ("book_order", "permanent", 1),
                           ("book_order", "unavailable", 3)):  # fmt: skip
        calls.labels("erp", op, outcome).inc(n)
    calls.labels("crm", "publish_status", "ok").inc(4)
    for value in [0.05] * 9 + [0.5]:
        seconds.labels("erp", "book_order").observe(value)
    for value in [0.05] * 2 + [2.0] * 2:
        seconds.labels("crm", "publish_status").observe(value)

    crm, erp = read_call_figures(registry)
    assert (erp.system, erp.made, erp.failed, erp.unavailable) == ("erp", 10, 2, 3)
    assert erp.error_ratio == pytest.approx(0.2)
    assert erp.mean_seconds == pytest.approx((9 * 0.05 + 0.5) / 10)
    assert erp.p95_at_most == 1.0  # 9 of 10 are at most 0.1 s: the p95 is in the (0.1, 1] bucket
    assert crm.error_ratio == 0 and crm.p95_at_most == math.inf


def test_no_calls_no_figures() -> None:
    registry, calls, _ = instruments()
    assert read_call_figures(registry) == []
    calls.labels("billing", "create_subscription", "unavailable").inc()
    [billing] = read_call_figures(registry)
    assert billing.made == 0 and billing.error_ratio is None and billing.mean_seconds is None
