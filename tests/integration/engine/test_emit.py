"""Follow-up events (``ctx.emit``): logged with the handler's completion, once, in the trace the
handler names (its own by default), caused by the event that emitted them."""

from __future__ import annotations

from sqlalchemy import select

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import TransientError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.store.schema import EVENTS_WITH_STATE, event_state, events


def _logged(runtime: Runtime, type: str) -> list[tuple[str, str, str, str | None]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(
                events.c.subject,
                event_state.c.status,
                events.c.correlation_id,
                events.c.causation_id,
            )
            .select_from(EVENTS_WITH_STATE)
            .where(events.c.type == type)
            .order_by(events.c.pos)
        ).all()
    return [(r.subject, r.status, r.correlation_id, r.causation_id) for r in rows]


async def test_emitted_events_keep_or_join_a_trace_and_are_logged_once(
    runtime: Runtime, clock: ManualClock
) -> None:
    registry = Registry()
    runs = {"n": 0}

    @registry.on("billing.payment.refunded", retry=RetryPolicy(max_attempts=3, base_seconds=1.0))
    async def route(ctx: HandlerContext, event: Event) -> None:
        if event.subject.startswith("contract:"):
            return
        runs["n"] += 1
        ctx.emit(
            "billing.payment.refunded",
            "contract:C-1",
            dict(event.data),
            key="contract",
            correlation_id="deal-1",
        )
        ctx.emit("audit.noted", event.subject, {"routed": True}, key="note")
        if runs["n"] == 1:
            raise TransientError("fails after emitting: nothing emitted is logged", system="erp")

    @registry.on("audit.noted")
    async def noted(ctx: HandlerContext, event: Event) -> None:
        assert event.data == {"routed": True}

    heard = new_event(
        "billing.payment.refunded",
        "billing:cus_1",
        {"object": {"id": "ch_1"}},
        source="billing",
        id="evt_1",
        correlation_id="billing-cus_1",
    )
    runtime.log.append(heard)
    worker = Worker(runtime, registry)
    await worker.drain()
    assert _logged(runtime, "audit.noted") == []

    clock.advance(2.0)  # past the first backoff
    await worker.drain()
    assert runs["n"] == 2
    assert _logged(runtime, "billing.payment.refunded") == [
        ("billing:cus_1", "done", "billing-cus_1", None),
        ("contract:C-1", "done", "deal-1", "evt_1"),
    ]
    assert _logged(runtime, "audit.noted") == [("billing:cus_1", "done", "billing-cus_1", "evt_1")]
