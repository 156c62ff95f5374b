"""The transactional outbox (``ctx.publish``): a business event is written in the commit of its
event's outcome, whatever that outcome, once per (event, type, key) however often it re-runs,
with a message id that does not depend on the store, the run or the time."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, TransientError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import outbox


def _outbox(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).mappings().all()
    return [dict(r) for r in rows]


def _registry(runs: dict[str, int]) -> Registry:
    registry = Registry()

    @registry.on("billing.invoice.finalized", retry=RetryPolicy(max_attempts=5, base_seconds=1.0))
    async def post(ctx: HandlerContext, event: Event) -> None:
        runs[event.id] = runs.get(event.id, 0) + 1
        erp_id = await ctx.step("erp.post_invoice", lambda _k: f"INV-{event.id}")
        ctx.publish("invoice.posted", {"erp_invoice_id": erp_id, "total": "10.00"})
        if event.data.get("fail") == "transient" and runs[event.id] == 1:
            raise TransientError("the CRM timed out after the ERP posted", system="crm")
        if event.data.get("fail") == "permanent":
            raise DataError("the CRM refused the invoice after the ERP posted it", system="crm")

    return registry


def _event(ident: str, **data: Any) -> Event:
    return new_event(
        "billing.invoice.finalized",
        "contract:C-1",
        {"object": {"id": ident}, **data},
        source="billing",
        id=ident,
        correlation_id="deal-1",
    )


async def test_published_once_with_its_outcome_even_when_the_event_fails_later(
    runtime: Runtime, clock: ManualClock
) -> None:
    runs: dict[str, int] = {}
    runtime.log.append(_event("evt_retry", fail="transient"))
    runtime.log.append(_event("evt_refused", fail="permanent"))
    worker = Worker(runtime, _registry(runs))
    await worker.drain()
    # The transient failure's commit already holds its business event: the ERP posted it.
    first = _outbox(runtime)
    assert [(r["type"], r["causation_id"]) for r in first] == [("invoice.posted", "evt_retry")]
    clock.advance(2.0)
    await worker.drain()
    assert runs == {"evt_retry": 2, "evt_refused": 1}
    rows = _outbox(runtime)
    assert sorted((r["type"], r["causation_id"]) for r in rows) == [
        ("invoice.posted", "evt_refused"),
        ("invoice.posted", "evt_retry"),
    ]
    retried = next(r for r in rows if r["causation_id"] == "evt_retry")
    assert retried["message_id"] == first[0]["message_id"]  # the re-run wrote no second row
    assert retried["correlation_id"] == "deal-1" and retried["subject"] == "contract:C-1"
    assert retried["published_at"] is None
    assert '"erp_invoice_id":"INV-evt_retry"' in retried["data"]


async def test_message_id_is_derived_from_the_event_not_the_store_or_the_run(
    runtime: Runtime, tmp_path: Any
) -> None:
    later = ManualClock()
    later.advance(3600.0)
    other = Runtime.open(f"sqlite:///{tmp_path / 'other.sqlite'}", clock=later)
    try:
        for rt in (runtime, other):
            rt.log.append(_event("evt_same"))
            await Worker(rt, _registry({})).drain()
        ours, theirs = _outbox(runtime), _outbox(other)
    finally:
        other.close()
    assert len(ours) == len(theirs) == 1
    assert ours[0]["message_id"] == theirs[0]["message_id"]
    assert ours[0]["time"] != theirs[0]["time"]  # an hour apart, yet one message id


async def test_publish_of_one_event_twice_with_one_key_is_one_message(runtime: Runtime) -> None:
    registry = Registry()

    @registry.on("billing.payment.succeeded")
    async def paid(ctx: HandlerContext, event: Event) -> None:
        first = ctx.publish("payment.received", {"amount": "1.00"})
        again = ctx.publish("payment.received", {"amount": "1.00"})
        other = ctx.publish("payment.received", {"amount": "2.00"}, key="second")
        assert first.message_id == again.message_id != other.message_id

    runtime.log.append(
        new_event("billing.payment.succeeded", "contract:C-2", {}, source="billing", id="evt_p")
    )
    await Worker(runtime, registry).drain()
    assert [r["type"] for r in _outbox(runtime)] == ["payment.received", "payment.received"]


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        ("Invoice Posted", {}, "expected '<entity>.<verb>'"),
        ("q2c.invoice.posted", {}, "expected '<entity>.<verb>'"),
        ("invoice.posted", {"erp": object()}, "not JSON-able"),
        ("invoice.posted", {"blob": "x" * 300_000}, "expected at most"),
    ],
)
def test_a_type_or_payload_the_stream_could_not_carry_fails_in_the_handler(
    runtime: Runtime, event_type: str, data: dict[str, Any], expected: str
) -> None:
    ctx = HandlerContext(runtime, _event("evt_bad"), {})
    with pytest.raises(ValueError, match=expected.replace("'", ".").replace("<", ".")):
        ctx.publish(event_type, data)
    assert ctx.published == []
