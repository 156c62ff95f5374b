"""Pagination across pages (prices, events oldest first after a cursor) and usage dedup."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from quote2cash.canonical import Ref, UsageRecord
from quote2cash.connectors.roles import Billing

from .harness import BillingHarness, subscription_for


async def test_list_prices_reads_every_page(billing: Billing, harness: BillingHarness) -> None:
    made = harness.prices(103)
    plans = await billing.list_prices()
    assert sorted(p.id_in("billing") or "" for p in plans) == sorted(made)
    by_id = {p.id_in("billing"): p for p in plans}
    first = by_id[made[0]]
    assert (first.unit_amount, first.currency, first.interval) == (Decimal("1"), "EUR", "month")
    assert by_id[made[102]].unit_amount == Decimal("2.02")


async def test_metered_prices_keep_sub_cent_unit_amounts(
    billing: Billing, harness: BillingHarness
) -> None:
    price = harness.metered_price("api_calls", "0.25")
    (plan,) = [p for p in await billing.list_prices() if p.id_in("billing") == price]
    assert plan.usage_type == "metered"
    assert plan.unit_amount == Decimal("0.0025")


async def test_list_events_pages_oldest_first_and_resumes_after_the_cursor(
    billing: Billing, harness: BillingHarness
) -> None:
    harness.customers_made_outside_the_hub(7)
    expected = harness.event_ids_oldest_first()
    assert len(expected) == 7
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await billing.list_events(cursor, limit=3)
        if not page.items:
            assert page.next_cursor is None
            break
        pages += 1
        seen += [e.id for e in page.items]
        assert page.next_cursor == page.items[-1].id
        cursor = page.next_cursor
    assert seen == expected and pages == 3
    made = harness.customers_made_outside_the_hub(2)
    later = await billing.list_events(cursor, limit=3)
    assert [e.id for e in later.items] == harness.event_ids_oldest_first()[7:]
    assert [e.type for e in later.items] == ["billing.customer.created"] * 2
    assert [e.subject for e in later.items] == made
    created = [e.created for e in later.items]
    assert created == sorted(created)


async def test_subscription_events_are_keyed_by_the_subscription(
    billing: Billing, harness: BillingHarness
) -> None:
    price = harness.seat_price("10.00")
    customer = harness.customer_with_card()
    start = harness.event_ids_oldest_first()[-1]
    created = await billing.create_subscription(
        subscription_for(customer, [(price, 1)]), idempotency_key="evt-1:subscribe"
    )
    page = await billing.list_events(start, limit=100)
    sub_id = created.id_in("billing")
    subjects: dict[str, set[str]] = {}
    for event in page.items:
        subjects.setdefault(event.type, set()).add(event.subject)
    for kind in ("billing.subscription.activated", "billing.invoice.finalized"):
        assert subjects.get(kind) == {sub_id}, (kind, subjects)
    assert {"billing.payment.succeeded", "billing.invoice.paid"} <= set(subjects)


async def test_usage_with_one_identifier_is_counted_once(
    billing: Billing, harness: BillingHarness
) -> None:
    price = harness.metered_price("api_calls", "0.5")
    customer = harness.customer_with_card()
    customer_id = customer.id_in("billing")
    assert customer_id is not None
    created = await billing.create_subscription(
        subscription_for(customer, [(price, None)]), idempotency_key="evt-1:subscribe"
    )
    at = datetime.now(UTC).replace(microsecond=0)
    record = UsageRecord(
        meter="api_calls",
        customer=Ref.external("billing", customer_id),
        quantity=Decimal("120"),
        timestamp=at,
        idempotency_key="usage-batch-1",
    )
    await billing.report_usage(record)
    await billing.report_usage(record)
    assert harness.usage_total(price, customer_id) == Decimal(120)
    by_item = UsageRecord(
        subscription_item=Ref(external_ids=created.items[0].external_ids),
        quantity=Decimal("30"),
        timestamp=at,
        idempotency_key="usage-batch-2",
    )
    await billing.report_usage(by_item)
    await billing.report_usage(by_item)
    assert harness.usage_total(price, customer_id) == Decimal(150)
