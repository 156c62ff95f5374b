"""A contract discount reaches Stripe as a percent-off coupon on the subscription item: one coupon
per percentage, found or created, and the invoice the hub reads back is net of it to the cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from quote2cash.canonical import (
    Money,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from quote2cash.connectors.stripe import StripeBilling
from quote2cash.engine.errors import ConflictError

from .conftest import Sandbox

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _subscription(
    customer_id: str, items: list[tuple[str, int, Decimal | None]], number: str = "C-DISC-1"
) -> Subscription:
    return Subscription(
        contract_number=number,
        customer=Ref.external("billing", customer_id),
        currency="EUR",
        status=SubscriptionStatus.INCOMPLETE,
        items=tuple(
            SubscriptionItem(
                price_plan=Ref.external("billing", price), quantity=quantity, discount_percent=off
            )
            for price, quantity, off in items
        ),
        current_period_start=NOW,
        current_period_end=NOW + timedelta(days=31),
    )


async def test_the_discounted_item_is_billed_net_and_the_coupon_is_shared(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    seat, support = sandbox.seat_price(4500), sandbox.seat_price(17900)
    customer_id = sandbox.customer()
    created = await billing.create_subscription(
        _subscription(customer_id, [(seat, 10, Decimal("12.5")), (support, 1, None)]),
        idempotency_key="evt-1:subscribe",
    )
    assert [i.discount_percent for i in created.items] == [Decimal("12.5"), None]
    stripe_sub = sandbox.sdk.v1.subscriptions.retrieve(created.id_in("billing") or "")
    discounts = {i.price.id: i.discounts for i in stripe_sub["items"]["data"]}
    assert len(discounts[seat]) == 1 and discounts[support] == []
    coupon = sandbox.sdk.v1.coupons.retrieve("q2c-12_5pct")
    assert (coupon.percent_off, coupon.duration) == (12.5, "forever")

    # The hub's reading of the first invoice: the seat line net of 12.5 %, support in full.
    invoice_id = str(stripe_sub.latest_invoice)
    invoice = await billing.get_invoice(invoice_id)
    assert sorted(line.amount for line in invoice.lines) == [
        Money("179.00", "EUR"),
        Money("393.75", "EUR"),  # 450.00 less 56.25
    ]
    assert invoice.total == Money("572.75", "EUR")

    # A second contract at the same percentage reuses the coupon.
    again = await billing.create_subscription(
        _subscription(sandbox.customer(), [(seat, 3, Decimal("12.50"))], number="C-DISC-2"),
        idempotency_key="evt-2:subscribe",
    )
    assert again.items[0].discount_percent == Decimal("12.5")
    coupons = [c.id for c in sandbox.sdk.v1.coupons.list().auto_paging_iter()]
    assert coupons == ["q2c-12_5pct"]
    assert sandbox.sdk.v1.coupons.retrieve("q2c-12_5pct").times_redeemed == 2


async def test_a_coupon_of_that_name_with_another_discount_is_a_conflict(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    sandbox.sdk.v1.coupons.create(
        params={"id": "q2c-20pct", "percent_off": 25, "duration": "forever"}
    )
    with pytest.raises(ConflictError, match=r"q2c-20pct is 25(\.0)?% off forever, expected 20%"):
        await billing.create_subscription(
            _subscription(sandbox.customer(), [(sandbox.seat_price(), 2, Decimal("20"))]),
            idempotency_key="evt-3:subscribe",
        )
    assert list(sandbox.sdk.v1.subscriptions.list().auto_paging_iter()) == []
