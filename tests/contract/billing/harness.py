"""What the Billing contract needs besides the role itself: set-up, observation and faults.

One harness class per implementation. Scenarios set the stage through it (prices, customers with
a payment method, a clock), act through the ``Billing`` role only, and count the results through
it again -- never through the connector under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import stripe

from quote2cash.canonical import (
    Customer,
    Money,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from quote2cash.connectors.stripe import StripeBilling
from quote2cash.sandbox.stripe import EmulatorConfig, StripeEmulator

API_KEY = "sk_test_quote2cash_sandbox"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def subscription_for(
    customer: Customer | Ref,
    prices: list[tuple[str, int | None]],
    *,
    currency: str = "EUR",
    contract_number: str = "C-0001",
    global_id: str | None = None,
    start: datetime = T0,
) -> Subscription:
    """A subscription as the hub asks for it: items by price id / lookup key and quantity."""
    ref = customer if isinstance(customer, Ref) else Ref(external_ids=customer.external_ids)
    return Subscription(
        global_id=global_id,
        contract_number=contract_number,
        customer=ref,
        currency=currency,
        status=SubscriptionStatus.INCOMPLETE,
        items=tuple(
            SubscriptionItem(price_plan=Ref.external("billing", price), quantity=quantity)
            for price, quantity in prices
        ),
        current_period_start=start,
        current_period_end=start + timedelta(days=31),
    )


class StripeEmulatorHarness:
    """The contract's view of Stripe: our emulator, driven by the sync SDK for set-up."""

    name = "stripe"

    def __init__(self, emulator: StripeEmulator, base_url: str) -> None:
        self.emulator = emulator
        self.base_url = base_url
        self.sdk = stripe.StripeClient(
            api_key=API_KEY, base_addresses={"api": base_url}, max_network_retries=0
        )
        self._connectors: list[StripeBilling] = []
        self._counter = 0
        self.billing = self.connector()

    def reset(self) -> None:
        self.emulator.reset()
        self.emulator.config = EmulatorConfig()

    def connector(self, **overrides: Any) -> StripeBilling:
        """A fresh connector for the emulator; ``overrides`` change its settings."""
        built = StripeBilling.for_sandbox(self.base_url, **overrides)
        self._connectors.append(built)
        return built

    async def close(self) -> None:
        for built in self._connectors:
            await built.aclose()
        self.emulator.config = EmulatorConfig()

    def _unique(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    # --- set-up -------------------------------------------------------------------------------

    def start_clock(self, at: datetime = T0) -> str:
        clock = self.sdk.v1.test_helpers.test_clocks.create(
            params={"frozen_time": int(at.timestamp())}
        )
        return str(clock.id)

    def advance_clock(self, clock: str, to: datetime) -> None:
        self.sdk.v1.test_helpers.test_clocks.advance(
            clock, params={"frozen_time": int(to.timestamp())}
        )

    def seat_price(
        self, amount: str, currency: str = "EUR", *, lookup_key: str | None = None
    ) -> str:
        """A licensed monthly per-seat price; ``amount`` in currency units (``"33.33"``)."""
        product = self.sdk.v1.products.create(params={"name": self._unique("Seat ")})
        params: dict[str, Any] = {
            "product": product.id,
            "currency": currency.lower(),
            "unit_amount": Money(amount, currency).stripe_amount,
            "recurring": {"interval": "month", "usage_type": "licensed"},
        }
        if lookup_key:
            params["lookup_key"] = lookup_key
        return str(self.sdk.v1.prices.create(params=params).id)

    def prices(self, count: int, currency: str = "EUR") -> list[str]:
        product = self.sdk.v1.products.create(params={"name": "Bulk"})
        return [
            str(
                self.sdk.v1.prices.create(
                    params={
                        "product": product.id,
                        "currency": currency.lower(),
                        "unit_amount": 100 + n,
                        "recurring": {"interval": "month"},
                        "lookup_key": f"bulk_{n}",
                    }
                ).id
            )
            for n in range(count)
        ]

    def metered_price(self, event_name: str, unit_amount: str, currency: str = "EUR") -> str:
        """A meter and a monthly metered price on it; ``unit_amount`` in minor units."""
        meter = self.sdk.v1.billing.meters.create(
            params={
                "display_name": event_name,
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
            }
        )
        product = self.sdk.v1.products.create(params={"name": event_name})
        price = self.sdk.v1.prices.create(
            params={
                "product": product.id,
                "currency": currency.lower(),
                "unit_amount_decimal": unit_amount,
                "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            }
        )
        return str(price.id)

    def customer_with_card(self, *, clock: str | None = None, name: str = "Acme GmbH") -> Customer:
        """A billing customer with a working default card (optionally on a test clock)."""
        params: dict[str, Any] = {
            "name": name,
            "email": "ap@acme.example",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
        if clock:
            params["test_clock"] = clock
        created = self.sdk.v1.customers.create(params=params)
        return Customer(name=name, external_ids={"billing": created.id})

    def give_card(self, customer_id: str) -> None:
        card = self.sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
        self.sdk.v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": card.id}}
        )

    def make_events(self, count: int) -> None:
        for _ in range(count):
            self.sdk.v1.customers.create(params={"name": self._unique("Event source ")})

    # --- observation --------------------------------------------------------------------------

    def _all(self, listing: Any) -> Iterator[Any]:
        yield from listing.auto_paging_iter()

    def count(self, kind: str) -> int:
        service = {
            "customers": self.sdk.v1.customers,
            "subscriptions": self.sdk.v1.subscriptions,
            "invoices": self.sdk.v1.invoices,
        }[kind]
        params: dict[str, Any] = {"limit": 100}
        if kind == "subscriptions":
            params["status"] = "all"
        return sum(1 for _ in self._all(service.list(params=params)))

    def customer(self, customer_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.sdk.v1.customers.retrieve(customer_id).to_dict()
        return result

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.sdk.v1.subscriptions.retrieve(subscription_id).to_dict()
        return result

    def invoices_of(self, subscription_id: str) -> list[dict[str, Any]]:
        """Newest first."""
        listing = self.sdk.v1.invoices.list(params={"subscription": subscription_id, "limit": 100})
        return [i.to_dict() for i in listing.data]

    def pending_proration_total(self, customer_id: str) -> int:
        items = self.sdk.v1.invoice_items.list(params={"customer": customer_id, "limit": 100})
        return sum(i.amount for i in items.data if i.invoice is None)

    def stripe_total(self, invoice_id: str) -> Money:
        invoice = self.sdk.v1.invoices.retrieve(invoice_id)
        return Money.from_stripe_amount(invoice.total, invoice.currency)

    def usage_total(self, price_id: str, customer_id: str) -> Decimal:
        price = self.sdk.v1.prices.retrieve(price_id)
        assert price.recurring is not None and price.recurring.meter is not None
        summary = self.sdk.v1.billing.meters.event_summaries.list(
            price.recurring.meter,
            params={"customer": customer_id, "start_time": 0, "end_time": 4_102_444_800},
        )
        return Decimal(str(summary.data[0].aggregated_value)) if summary.data else Decimal(0)

    def idempotency_keys_of(self, stripe_event_type: str) -> list[str | None]:
        """The ``Idempotency-Key`` of the request behind each event of this type, oldest first."""
        events = self._all(self.sdk.v1.events.list(params={"limit": 100}))
        keys = [e.request.idempotency_key for e in events if e.type == stripe_event_type]
        return list(reversed(keys))

    def event_ids_oldest_first(self) -> list[str]:
        ids = [e.id for e in self._all(self.sdk.v1.events.list(params={"limit": 100}))]
        return list(reversed(ids))

    # --- faults -------------------------------------------------------------------------------

    def rate_limit_next(self, requests: int, retry_after: int | None = 0) -> None:
        self.emulator.config.retry_after_seconds = retry_after
        self.emulator.config.fail_next_429 = requests

    def rate_limit_every(self, nth: int) -> None:
        self.emulator.config.retry_after_seconds = 0
        self.emulator.config.rate_limit_every_nth = nth

    def fail_next_500(self, requests: int) -> None:
        self.emulator.config.fail_next_500 = requests

    def pending_faults(self) -> int:
        """Injected failures not yet served (0 means the storm really hit)."""
        return self.emulator.config.fail_next_429 + self.emulator.config.fail_next_500

    def clear_faults(self) -> None:
        self.emulator.config.fail_next_429 = 0
        self.emulator.config.rate_limit_every_nth = None
        self.emulator.config.fail_next_500 = 0
        self.emulator.config.retry_after_seconds = 1
