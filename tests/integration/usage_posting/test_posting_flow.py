"""The posting flow: each aggregate version is counted by billing once, as a delta, in period
order; re-runs and replays post nothing twice; late usage follows the configured policy."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from quote2cash.engine.control import pause_system, resume_system
from quote2cash.engine.events import new_event
from quote2cash.engine.queries import failed_events
from quote2cash.flows.usage_posting import BATCH_ACCEPTED
from quote2cash.identity import Operator
from quote2cash.masterdata.xref import Kind
from quote2cash.usage.postings import LatePosting, Outcome

from .conftest import FEB, JAN, MAR, UsageWorld

DAY = timedelta(days=1)
OPS = Operator("ops", frozenset({"operator"}), via="token")


async def test_each_version_is_posted_once_as_a_delta_and_a_replay_posts_nothing(
    world: UsageWorld,
) -> None:
    first = await world.accept(("100", JAN + DAY), ("20.5", JAN + 3 * DAY))
    assert world.counted(JAN, FEB) == Decimal("120.5")
    await world.accept(("4.5", JAN + 5 * DAY), ("7", FEB + DAY))
    assert world.counted(JAN, FEB) == Decimal(125)
    assert world.counted(FEB, MAR) == Decimal(7)
    await world.announce(first)  # the same batch announced again (redelivery, replay)
    assert world.counted(JAN, FEB) == Decimal(125)
    postings = list(world.deps.usage_postings.all())
    assert [(p.period_start, p.version, p.quantity, p.outcome) for p in postings] == [
        (JAN, 1, Decimal("120.5"), Outcome.POSTED),
        (JAN, 2, Decimal("4.5"), Outcome.POSTED),
        (FEB, 1, Decimal(7), Outcome.POSTED),
    ]
    assert [p.identifier for p in postings] == [
        f"agg-{world.subscription}-api_calls-20260101-v1:v1",
        f"agg-{world.subscription}-api_calls-20260101-v2:v2",
        f"agg-{world.subscription}-api_calls-20260201-v1:v1",
    ]
    assert not failed_events(world.runtime.engine)


async def test_the_invoice_bills_what_was_posted_for_its_period(world: UsageWorld) -> None:
    await world.accept(("1000", JAN + DAY), ("336.5", JAN + 20 * DAY))
    world.advance(FEB + timedelta(hours=1))
    (line,) = world.usage_invoice_lines()
    assert Decimal(line.quantity_decimal) == Decimal("1336.5")
    assert line.amount == 495  # 1336.5 x 0.37 cents = 494.505 -> 495 cents


async def test_late_usage_is_adjusted_into_the_next_invoice(world: UsageWorld) -> None:
    await world.accept(("100", JAN + DAY))
    world.advance(FEB + timedelta(hours=1))
    await world.accept(("40", JAN + 10 * DAY))  # January, heard after January was invoiced
    late = world.deps.usage_postings.of_period(world.subscription, "api_calls", JAN)[-1]
    assert (late.version, late.quantity, late.outcome) == (2, Decimal(40), Outcome.ADJUSTED)
    assert late.counted_at == MAR - timedelta(seconds=1)  # inside the open period
    world.advance(MAR + timedelta(hours=1))
    jan, feb = world.usage_invoice_lines()
    assert (Decimal(jan.quantity_decimal), Decimal(feb.quantity_decimal)) == (100, 40)


async def test_late_usage_is_refused_with_its_reason_under_the_reject_policy(
    world: UsageWorld,
) -> None:
    world.deps.late_usage = LatePosting.REJECT
    await world.accept(("100", JAN + DAY))
    world.advance(FEB + timedelta(hours=1))
    await world.accept(("40", JAN + 10 * DAY))
    refused = world.deps.usage_postings.of_period(world.subscription, "api_calls", JAN)[-1]
    assert (refused.outcome, refused.quantity) == (Outcome.REJECTED, Decimal(40))
    assert refused.reason is not None and "already invoiced" in refused.reason
    assert world.counted(JAN, MAR) == Decimal(100)
    assert world.deps.usage_postings.posted_total(world.subscription, "api_calls", JAN) == 100
    await world.accept(("5", JAN + 11 * DAY))  # refused once, not again with the next version
    again = world.deps.usage_postings.of_period(world.subscription, "api_calls", JAN)[-1]
    assert (again.version, again.outcome, again.quantity) == (3, Outcome.REJECTED, Decimal(5))
    assert not failed_events(world.runtime.engine)


async def test_a_correction_that_lowers_usage_is_refused_not_sent_negative(
    world: UsageWorld,
) -> None:
    batch = await world.accept(("100", JAN + DAY), ("30", JAN + 2 * DAY))
    world.ledger.amend(f"{batch}-2", "10")
    await world.announce("correction")
    lowered = world.deps.usage_postings.of_period(world.subscription, "api_calls", JAN)[-1]
    assert (lowered.version, lowered.outcome, lowered.quantity) == (
        2,
        Outcome.REJECTED,
        Decimal(-20),
    )
    assert lowered.reason is not None and "lowers api_calls" in lowered.reason
    assert world.counted(JAN, FEB) == Decimal(130)
    await world.accept(("7", JAN + 3 * DAY))
    latest = world.deps.usage_postings.of_period(world.subscription, "api_calls", JAN)[-1]
    assert (latest.version, latest.outcome, latest.quantity) == (3, Outcome.POSTED, Decimal(7))
    assert world.counted(JAN, FEB) == Decimal(137)


async def test_a_long_aggregate_id_gets_an_identifier_billing_takes(world: UsageWorld) -> None:
    batch = world.ledger.accept(
        world.subscription, "api_calls", [("3", JAN + DAY)], prefix="x" * 120
    )
    await world.announce(batch)
    (posting,) = list(world.deps.usage_postings.all())
    assert posting.identifier.startswith("q2c-") and len(posting.identifier) <= 100
    assert posting.aggregate_id.startswith("x" * 120)
    assert world.counted(JAN, FEB) == Decimal(3)


async def test_usage_named_by_the_hubs_global_id_reaches_billings_subscription(
    world: UsageWorld,
) -> None:
    gid = world.deps.xref.ensure_global_id(
        Kind.SUBSCRIPTION, "billing", world.subscription, actor="test"
    )
    world.ledger.periods[gid] = world.ledger.periods[world.subscription]
    batch = world.ledger.accept(gid, "api_calls", [("12", JAN + DAY)])
    await world.announce(batch)  # the event names billing's id; the aggregate the global id
    (posting,) = list(world.deps.usage_postings.all())
    assert (posting.subscription, posting.billing_subscription) == (gid, world.subscription)
    assert world.counted(JAN, FEB) == Decimal(12)


async def test_versions_frozen_by_a_run_that_crashed_are_posted_by_the_next(
    world: UsageWorld,
) -> None:
    batch = world.ledger.accept(world.subscription, "api_calls", [("9", JAN + DAY)])
    world.ledger.hand_over(world.ledger.touched[batch], JAN)  # frozen, then the worker died
    assert world.ledger.pending_aggregates() == []
    late = world.ledger.accept(world.subscription, "api_calls", [("1", JAN + 2 * DAY)])
    assert world.ledger.touched[late] != world.ledger.touched[batch]  # a new version
    await world.announce(batch)  # the event names the frozen version
    await world.announce(late)
    postings = list(world.deps.usage_postings.all())
    assert [(p.version, p.quantity) for p in postings] == [(1, Decimal(9)), (2, Decimal(1))]
    assert world.counted(JAN, FEB) == Decimal(10)


async def drain_until_posted(world: UsageWorld, count: int) -> None:
    """Run the worker until ``count`` postings are recorded (retries wait their backoff)."""
    for _ in range(100):
        await world.worker.drain()
        if len(list(world.deps.usage_postings.all())) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} postings after the retries")


async def test_a_rate_limited_posting_is_retried_by_the_engine_and_counted_once(
    world: UsageWorld,
) -> None:
    assert world.emulator is not None
    world.emulator.config.retry_after_seconds = 0
    world.emulator.config.fail_next_429 = 2
    batch = world.ledger.accept(world.subscription, "api_calls", [("6", JAN + DAY)])
    world.runtime.log.append(
        new_event(
            BATCH_ACCEPTED,
            f"contract:{world.subscription}",
            {"subscription": world.subscription, "aggregates": world.ledger.touched[batch]},
        )
    )
    await drain_until_posted(world, 1)
    assert world.emulator.config.fail_next_429 == 0, "the rate limit really hit"
    assert world.counted(JAN, FEB) == Decimal(6)


async def test_a_paused_billing_holds_posting_until_it_is_resumed(world: UsageWorld) -> None:
    pause_system(world.runtime, "billing", by=OPS, reason="billing maintenance")
    batch = world.ledger.accept(world.subscription, "api_calls", [("4", JAN + DAY)])
    await world.announce(batch)
    assert list(world.deps.usage_postings.all()) == []
    assert world.counted(JAN, FEB) == Decimal(0)
    resume_system(world.runtime, "billing", by=OPS)
    await drain_until_posted(world, 1)
    assert world.counted(JAN, FEB) == Decimal(4)
