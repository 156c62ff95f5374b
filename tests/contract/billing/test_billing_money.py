"""Money to the cent: invoices map with lines + tax == total == billing's own total."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from quote2cash.canonical import Amendment, Money, ProrationBehavior, Ref
from quote2cash.connectors.roles import Billing

from .harness import T0, BillingHarness, subscription_for


async def test_three_seats_at_33_33_eur_bill_99_99(
    billing: Billing, harness: BillingHarness
) -> None:
    clock = harness.start_clock()
    customer = harness.customer_with_card(clock=clock)
    price = harness.seat_price("33.33")
    created = await billing.create_subscription(
        subscription_for(customer, [(price, 3)]), idempotency_key="evt-1:subscribe"
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    (first,) = harness.invoices_of(sub_id)
    invoice = await billing.get_invoice(first)
    assert invoice.total == Money("99.99", "EUR") == harness.invoice_total(first)
    assert invoice.subtotal + invoice.tax == invoice.total
    assert invoice.status == "paid" and invoice.amount_paid == Money("99.99", "EUR")
    assert invoice.customer.id_in("billing") == customer.id_in("billing")
    assert invoice.subscription is not None and invoice.subscription.id_in("billing") == sub_id
    (line,) = invoice.lines
    assert (line.quantity, line.unit_amount) == (Decimal(3), Decimal("33.33"))
    assert (line.service_start, line.service_end) == (date(2026, 1, 1), date(2026, 2, 1))
    assert line.price_plan is not None and line.price_plan.id_in("billing") == price
    assert line.subscription_item is not None
    assert line.subscription_item.id_in("billing") == created.items[0].id_in("billing")
    assert created.current_period_start == T0
    assert created.current_period_end == T0 + timedelta(days=31)


async def test_mid_period_quantity_change_prorates_to_the_cent(
    billing: Billing, harness: BillingHarness
) -> None:
    clock = harness.start_clock()
    customer = harness.customer_with_card(clock=clock)
    price = harness.seat_price("33.33")
    created = await billing.create_subscription(
        subscription_for(customer, [(price, 3)]), idempotency_key="evt-1:subscribe"
    )
    sub_id = created.id_in("billing")
    assert sub_id is not None
    changed_at = T0 + timedelta(days=10, hours=7)
    harness.advance_clock(clock, changed_at)
    amended = await billing.change_quantity(
        Amendment(
            subscription=Ref.external("billing", sub_id),
            subscription_item=Ref(external_ids=created.items[0].external_ids),
            amendment_number=1,
            effective_at=changed_at,
            previous_quantity=3,
            new_quantity=5,
            proration_behavior=ProrationBehavior.ALWAYS_INVOICE,
        ),
        idempotency_key="evt-2:amend",
    )
    assert amended.items[0].quantity == 5
    latest = harness.invoices_of(sub_id)[0]
    invoice = await billing.get_invoice(latest)
    assert invoice.total == harness.invoice_total(latest)
    assert Money.sum((line.amount for line in invoice.lines), "EUR") + invoice.tax == invoice.total
    credit = [line for line in invoice.lines if line.amount.is_negative()]
    charge = [line for line in invoice.lines if line.amount.is_positive()]
    assert len(credit) == 1 and len(charge) == 1
    assert all(line.proration for line in invoice.lines)
    assert credit[0].service_start == date(2026, 1, 11)
    assert credit[0].service_end == date(2026, 2, 1)
    # Proration by the time left: 20 d 17 h of 31 d, each line rounded on its own.
    remaining = Decimal(20 * 24 + 17) / Decimal(31 * 24)
    assert credit[0].amount == Money.quantize(-3 * Decimal("33.33") * remaining, "EUR")
    assert charge[0].amount == Money.quantize(5 * Decimal("33.33") * remaining, "EUR")
    assert invoice.total == credit[0].amount + charge[0].amount


async def test_create_prorations_leaves_them_for_the_next_invoice(
    billing: Billing, harness: BillingHarness
) -> None:
    clock = harness.start_clock()
    customer = harness.customer_with_card(clock=clock)
    price = harness.seat_price("33.33")
    created = await billing.create_subscription(
        subscription_for(customer, [(price, 3)]), idempotency_key="evt-1:subscribe"
    )
    sub_id = created.id_in("billing")
    customer_id = customer.id_in("billing")
    assert sub_id is not None and customer_id is not None
    harness.advance_clock(clock, T0 + timedelta(days=20))
    await billing.change_quantity(
        Amendment(
            subscription=Ref.external("billing", sub_id),
            subscription_item=Ref(external_ids=created.items[0].external_ids),
            amendment_number=1,
            effective_at=T0 + timedelta(days=20),
            new_quantity=2,
        ),
        idempotency_key="evt-2:amend",
    )
    assert len(harness.invoices_of(sub_id)) == 1
    assert harness.pending_adjustments(customer_id).is_negative()
    harness.advance_clock(clock, T0 + timedelta(days=31, hours=2))
    renewal = harness.invoices_of(sub_id)[0]
    invoice = await billing.get_invoice(renewal)
    assert invoice.total == harness.invoice_total(renewal)
    assert any(line.proration and line.amount.is_negative() for line in invoice.lines)
    assert any(
        not line.proration and line.amount == Money("66.66", "EUR") for line in invoice.lines
    )
