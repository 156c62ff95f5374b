"""``GET /metrics`` served over real HTTP: a viewer's token (401 otherwise, saying how to get
one), or public by switch; its store-derived figures are the store's; its label sets stay the
same however many deals go through (no id ever in a label)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quote2cash.api.app import build_app
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.observability import metrics
from quote2cash.observability.kpi_collector import DURATION_BUCKETS
from support.identity import first_admin, new_operator, token_of
from support.kpi_scenario import History
from support.served import served

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ID_LIKE = re.compile(r"\d{3,}|[0-9a-f]{8}-|^(sub|si|in|cus|pi)_|contract:|deal-|^C-|^006")


async def scrape(base: str, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/metrics", headers=headers) as answer,
    ):
        return answer.status, answer.headers.get("Content-Type", ""), await answer.text()


def parse(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, tuple(sorted(labels.items())))]


async def play(runtime: Runtime, clock: ManualClock, deals: int, first: int = 0) -> History:
    """``deals`` deals of US, DE and no entity, each invoiced and paid; one amendment fails."""
    h = History(runtime, clock)
    start = clock.now()
    made = []
    for n in range(first, first + deals):
        at = start + timedelta(minutes=n - first)
        made.append(await h.deal(n, at, ["US", "DE", None][n % 3]))
    for deal in made:
        await h.invoice(deal, int(deal.contract[2:]), deal.closed_at + timedelta(hours=1))
    await h.amendment(made[0], first, clock.now(), "done")
    await h.amendment(made[1], first + 1, clock.now(), "exception")
    await h.amendment(made[2], first + 2, clock.now(), "done", side_lane=True)
    return h


async def test_metrics_need_a_viewer_token_unless_public(tmp_path: Path) -> None:
    clock = ManualClock()
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", clock=clock)
    try:
        admin = first_admin(runtime)
        viewer = new_operator(runtime, admin, "vera", "viewer")
        token = token_of(runtime, viewer)
        short = token_of(runtime, viewer, "short-lived", ttl=timedelta(hours=1))
        async with served(build_app(runtime, metrics_public=False)) as base:
            status, _, body = await scrape(base)
            assert status == 401
            assert "q2c tokens create" in body and "--role viewer" in body
            status, _, body = await scrape(base, "q2c_not-a-token")
            assert status == 401 and "q2c tokens create" in body
            status, kind, body = await scrape(base, token)
            assert status == 200 and kind.startswith("text/plain")
            assert "q2c_backlog_events" in body
            clock.advance(7200)
            status, _, body = await scrape(base, short)
            assert status == 401 and "expired" in body and "q2c tokens create" in body
        async with served(build_app(runtime, metrics_public=True)) as base:
            status, _, body = await scrape(base)
            assert status == 200 and "q2c_order_activation_seconds" in body
            # The switch opens /metrics only.
            async with aiohttp.ClientSession() as http, http.get(f"{base}/v1/events") as answer:
                assert answer.status == 401
    finally:
        runtime.close()


async def test_store_figures_on_metrics_are_the_stores(tmp_path: Path) -> None:
    clock = ManualClock()
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}", clock=clock)
    try:
        h = await play(runtime, clock, deals=9)
        async with served(build_app(runtime, metrics_public=True)) as base:
            status, _, body = await scrape(base)
        assert status == 200
        series = parse(body)
        for entity, label in (("US", "US"), ("DE", "DE"), (None, "unknown")):
            deals = [d for d in h.plan.deals if d.entity == entity]
            billing = [d.billing_after for d in deals]
            name = "q2c_order_activation_seconds"
            assert value(series, f"{name}_count", entity=label, stage="billing") == len(billing)
            assert value(series, f"{name}_sum", entity=label, stage="billing") == sum(billing)
            for le in DURATION_BUCKETS:
                within = sum(b <= le for b in billing)
                got = value(series, f"{name}_bucket", entity=label, stage="billing", le=f"{le}.0")
                assert got == within
            invoices = [i for i in h.plan.invoices if i.deal.entity == entity]
            lag = "q2c_invoice_generation_lag_seconds_sum"
            assert value(series, lag, entity=label, stage="erp") == sum(
                i.erp_after for i in invoices
            )
            currency = deals[0].currency
            booked = sum((sum(d.lines, Decimal(0)) for d in deals), Decimal(0))
            billed = sum((i.total for i in invoices), Decimal(0))
            assert value(series, "q2c_bookings_amount", entity=label, currency=currency) == float(
                booked
            )
            assert value(series, "q2c_billings_amount", entity=label, currency=currency) == float(
                billed
            )
            assert value(
                series, "q2c_collections_amount", entity=label, currency=currency
            ) == float(sum((i.paid or Decimal(0) for i in invoices), Decimal(0)))
        assert value(series, "q2c_amendments_requested_total", entity="US") == 1
        assert value(series, "q2c_amendments_failed_total", entity="DE") == 1
        assert value(series, "q2c_amendment_failure_ratio", window="1h") == 1 / 3
        assert value(series, "q2c_exceptions_open", event_class="operational", category="data") == 1
        assert value(series, "q2c_events_dead_lettered", event_class="finance") == 0
        assert value(series, "q2c_backlog_events", system="none") == 1
        assert value(series, "q2c_backlog_events", system="erp") == 0
        assert value(series, "q2c_system_paused", system="erp") == 0
        assert value(series, "q2c_system_calls_total", system="erp", operation="book_order",
                     outcome="ok") >= 9  # fmt: skip
        assert value(series, "q2c_events_handled_total",
                     event_type="crm.amendment.requested", outcome="exception") >= 1  # fmt: skip
    finally:
        runtime.close()


def label_sets(series: Series) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(name, labels) for name, labels in series if not name.startswith("python_")}


async def test_label_sets_do_not_grow_with_the_number_of_deals(tmp_path: Path) -> None:
    """N deals on one store, then 2N other deals on another: the same series, none named by
    an id (a per-record step suffix such as a billing item id is cut from ``operation``).
    The per-process instruments are shared with every other test of this process, so the bound
    on each family counts only the label sets these deals added."""
    earlier = label_sets(parse(generate_latest(metrics.REGISTRY).decode()))
    seen = []
    for n, (first, deals) in enumerate(((0, 30), (100, 60))):
        clock = ManualClock()
        runtime = Runtime.open(f"sqlite:///{tmp_path / f'hub{n}.sqlite'}", clock=clock)
        try:
            h = await play(runtime, clock, deals=deals, first=first)
            async with served(build_app(runtime, metrics_public=True)) as base:
                series = parse((await scrape(base))[2])
        finally:
            runtime.close()
        ids = {d.opportunity for d in h.plan.deals} | {d.contract for d in h.plan.deals}
        for _, labels in series:
            for key, text in labels:
                if key == "le":
                    continue
                assert not ID_LIKE.search(text), (key, text)
                assert text not in ids
        seen.append(label_sets(series))
    assert seen[0] == seen[1]
    operations = {dict(labels).get("operation") for _, labels in seen[1]} - {None}
    assert "change_quantity" in operations
    per_family: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for name, labels in seen[1] - earlier:
        family = re.sub(r"_(bucket|count|sum|total|created)$", "", name)
        per_family.setdefault(family, set()).add(tuple(kv for kv in labels if kv[0] != "le"))
    assert max(len(sets) for sets in per_family.values()) <= 50


def test_metrics_off_records_nothing() -> None:
    before = metrics.REGISTRY.get_sample_value(
        "q2c_system_calls_total", {"system": "crm", "operation": "probe", "outcome": "ok"}
    )
    metrics.configure(False)
    try:
        metrics.call_finished("crm", "crm.probe", "ok", metrics.now())
        assert metrics.now() == 0.0
    finally:
        metrics.configure(True)
    assert before is None
    assert (
        metrics.REGISTRY.get_sample_value(
            "q2c_system_calls_total", {"system": "crm", "operation": "probe", "outcome": "ok"}
        )
        is None
    )
    metrics.call_finished("crm", "crm.probe", "ok", metrics.now())
    assert (
        metrics.REGISTRY.get_sample_value(
            "q2c_system_calls_total", {"system": "crm", "operation": "probe", "outcome": "ok"}
        )
        == 1
    )


async def test_an_incremental_collector_agrees_with_a_fresh_one(
    runtime: Runtime, clock: ManualClock
) -> None:
    """The long-lived collector reads only what is new or unfinished; after more deals, an
    invoice and a failed amendment, it reports what a collector reading everything reports."""
    from prometheus_client import CollectorRegistry, generate_latest

    from quote2cash.observability.kpi_collector import KpiCollector

    def exposition(collector: KpiCollector) -> Series:
        registry = CollectorRegistry()
        registry.register(collector)
        return parse(generate_latest(registry).decode())

    kept = KpiCollector(runtime.engine, cache_seconds=0, clock=clock)
    h = await play(runtime, clock, deals=6)
    first = exposition(kept)
    assert first == exposition(KpiCollector(runtime.engine, cache_seconds=0, clock=clock))
    later = await h.deal(77, clock.now(), "DE", erp=False)
    await h.invoice(h.plan.deals[0], 78, clock.now())
    await h.amendment(h.plan.deals[3], 79, clock.now(), "exception")
    again = exposition(kept)
    assert again == exposition(KpiCollector(runtime.engine, cache_seconds=0, clock=clock))
    assert again != first
    count = "q2c_order_activation_seconds_count"
    assert (
        value(again, count, entity="DE", stage="billing")
        == value(first, count, entity="DE", stage="billing") + 1
    )
    assert later.erp_after is None
