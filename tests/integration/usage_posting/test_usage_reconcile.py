"""Usage reconciliation finds what was ingested but not posted, a meter event billing lost or
never had from the hub, and an invoice line that bills something else than the hub posted."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from quote2cash.reconcile.model import DriftKind
from quote2cash.reconcile.usage import reconcile_usage
from quote2cash.usage.postings import LatePosting

from .conftest import FEB, JAN, MAR, UsageWorld

DAY = timedelta(days=1)


async def test_agreeing_usage_has_no_drift_and_every_side_is_read(world: UsageWorld) -> None:
    await world.accept(("10", JAN + DAY), ("5", JAN + 2 * DAY))
    await world.accept(("7", FEB + DAY))
    world.advance(FEB + timedelta(hours=1))
    periods, drifts = await reconcile_usage(world.runtime, world.billing, world.ledger)
    assert drifts == []
    jan, feb = periods
    assert (jan.ingested, jan.posted, jan.counted, jan.invoiced) == (15, 15, 15, 15)
    assert (feb.ingested, feb.posted, feb.counted, feb.invoiced) == (7, 7, 7, None)


async def test_a_meter_event_missing_in_billing_is_found(world: UsageWorld) -> None:
    await world.accept(("10", JAN + DAY))
    await world.accept(("4", JAN + 2 * DAY))
    (_, second) = world.deps.usage_postings.of_period(world.subscription, "api_calls", JAN)
    world.sdk.v1.billing.meter_event_adjustments.create(
        params={
            "event_name": "api_calls",
            "type": "cancel",
            "cancel": {"identifier": second.identifier},
        }
    )
    _, drifts = await reconcile_usage(world.runtime, world.billing, world.ledger)
    (drift,) = drifts
    assert drift.kind is DriftKind.USAGE and "missing in billing" in drift.detail
    assert drift.values["billing_counted"] == "10" and drift.values["sent_into_period"] == "14"
    assert second.identifier in drift.ids["hub"]


async def test_usage_billing_holds_that_the_hub_never_posted_is_found_and_invoiced_wrong(
    world: UsageWorld,
) -> None:
    await world.accept(("10", JAN + DAY))
    world.sdk.v1.billing.meter_events.create(
        params={
            "event_name": "api_calls",
            "payload": {"stripe_customer_id": world.customer, "value": "3"},
            "identifier": "not-from-the-hub",
            "timestamp": int((JAN + 3 * DAY).timestamp()),
        }
    )
    world.advance(FEB + timedelta(hours=1))
    _, drifts = await reconcile_usage(world.runtime, world.billing, world.ledger)
    counted, invoiced = drifts
    assert "never posted" in counted.detail and counted.values["billing_counted"] == "13"
    assert "bills 13" in invoiced.detail and invoiced.ids["billing"][1].startswith("il_")


async def test_usage_ingested_but_not_posted_is_found(world: UsageWorld) -> None:
    await world.accept(("10", JAN + DAY))
    world.ledger.accept(world.subscription, "api_calls", [("6", JAN + 4 * DAY)])  # not announced
    world.ledger.accept(world.subscription, "api_calls", [("2", MAR + DAY)])
    periods, drifts = await reconcile_usage(world.runtime, world.billing, world.ledger)
    assert [(d.kind, d.key.split()[-1]) for d in drifts] == [
        (DriftKind.MISSING, "2026-01-01"),
        (DriftKind.MISSING, "2026-03-01"),
    ]
    assert drifts[0].values["ingested"] == "16" and drifts[0].values["posted"] == "10"
    assert [p.counted for p in periods] == [Decimal(10), Decimal(0)]


async def test_refused_usage_is_reported_with_its_reason(world: UsageWorld) -> None:
    world.deps.late_usage = LatePosting.REJECT
    await world.accept(("10", JAN + DAY))
    world.advance(FEB + timedelta(hours=1))
    await world.accept(("4", JAN + 9 * DAY))
    _, drifts = await reconcile_usage(world.runtime, world.billing, world.ledger)
    (drift,) = drifts
    assert drift.kind is DriftKind.USAGE and "already invoiced" in drift.detail
    assert (drift.values["ingested"], drift.values["posted"], drift.values["refused"]) == (
        "14",
        "10",
        "4",
    )
