"""One-time charges sold with a subscription: billed once, on the first invoice."""

from __future__ import annotations

from quote2cash.canonical import Money
from quote2cash.connectors.roles import Billing

from .harness import BillingHarness, subscription_for


async def test_a_one_time_item_is_billed_once_on_the_first_invoice(
    billing: Billing, harness: BillingHarness
) -> None:
    seat = harness.seat_price("49.00")
    onboarding = harness.one_time_price("1500.00")
    customer = harness.customer_with_card(clock=harness.start_clock())
    created = await billing.create_subscription(
        subscription_for(customer, [(seat, 5), (onboarding, 1)]),
        idempotency_key="evt-1:subscribe",
    )
    # Billing's subscription renews the seats only; the one-off is no item of it.
    assert [i.price_plan.id_in("billing") for i in created.items] == [seat]
    sub_id = created.id_in("billing")
    assert sub_id is not None
    [first] = harness.invoices_of(sub_id)
    invoice = await billing.get_invoice(first)
    assert invoice.total == Money("1745.00", "EUR")
    [one_off] = [line for line in invoice.lines if line.price_plan.id_in("billing") == onboarding]
    assert one_off.amount == Money("1500.00", "EUR") and not one_off.proration
    assert one_off.service_end > one_off.service_start
