"""The Stripe side of the Billing contract: our emulator, set up through the official SDK.

Implements ``harness.BillingHarness``; Stripe's own shapes (metadata keys, object fields, event
types) stay in this file and in the connector's own tests (tests/integration/stripe_connector).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import stripe

from quote2cash.canonical import Address, Customer, Money
from quote2cash.connectors.stripe import StripeBilling
from quote2cash.sandbox.stripe import EmulatorConfig, StripeEmulator

from .harness import T0, HarnessFactory, HeldItem, HeldSubscription, Kind

API_KEY = "sk_test_quote2cash_sandbox"


@contextmanager
def running_stripe() -> Iterator[HarnessFactory]:
    emulator = StripeEmulator()
    base_url, stop = emulator.start_in_thread()
    try:
        yield lambda: StripeEmulatorHarness(emulator, base_url)
    finally:
        stop()


class StripeEmulatorHarness:
    """The contract's view of Stripe: our emulator, driven by the sync SDK for set-up."""

    name = "stripe"
    bad_secret = "sk_test_this_key_is_wrong_0123456789"

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
            await built.close()
        self.emulator.config = EmulatorConfig()

    def billing_with_bad_secret(self) -> StripeBilling:
        self.emulator.config.api_keys = {API_KEY}
        return self.connector(api_key=self.bad_secret)

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

    def seat_price(self, amount: str, currency: str = "EUR", *, key: str | None = None) -> str:
        """A licensed monthly per-seat price; ``amount`` in currency units (``"33.33"``)."""
        product = self.sdk.v1.products.create(params={"name": self._unique("Seat ")})
        params: dict[str, Any] = {
            "product": product.id,
            "currency": currency.lower(),
            "unit_amount": Money(amount, currency).stripe_amount,
            "recurring": {"interval": "month", "usage_type": "licensed"},
        }
        if key:
            params["lookup_key"] = key
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

    def one_time_price(self, amount: str, currency: str = "EUR") -> str:
        product = self.sdk.v1.products.create(params={"name": self._unique("One-off ")})
        params = {
            "product": product.id,
            "currency": currency.lower(),
            "unit_amount": Money(amount, currency).stripe_amount,
        }
        return str(self.sdk.v1.prices.create(params=params).id)

    def metered_price(self, meter: str, unit_amount_minor: str, currency: str = "EUR") -> str:
        """A Stripe meter named after ``meter`` and a monthly metered price on it."""
        stripe_meter = self.sdk.v1.billing.meters.create(
            params={
                "display_name": meter,
                "event_name": meter,
                "default_aggregation": {"formula": "sum"},
            }
        )
        product = self.sdk.v1.products.create(params={"name": meter})
        price = self.sdk.v1.prices.create(
            params={
                "product": product.id,
                "currency": currency.lower(),
                "unit_amount_decimal": unit_amount_minor,
                "recurring": {
                    "interval": "month",
                    "usage_type": "metered",
                    "meter": stripe_meter.id,
                },
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

    def customers_made_outside_the_hub(self, count: int) -> list[str]:
        return [
            str(self.sdk.v1.customers.create(params={"name": self._unique("Event source ")}).id)
            for _ in range(count)
        ]

    def refund(self, payment_id: str, amount: Money | None = None) -> None:
        params: dict[str, Any] = {"payment_intent": payment_id}
        if amount is not None:
            params["amount"] = amount.stripe_amount
        self.sdk.v1.refunds.create(params=params)

    # --- observation --------------------------------------------------------------------------

    def _all(self, listing: Any) -> Iterator[Any]:
        yield from listing.auto_paging_iter()

    def count(self, kind: Kind) -> int:
        service = {
            "customers": self.sdk.v1.customers,
            "subscriptions": self.sdk.v1.subscriptions,
            "invoices": self.sdk.v1.invoices,
        }[kind]
        params: dict[str, Any] = {"limit": 100}
        if kind == "subscriptions":
            params["status"] = "all"
        return sum(1 for _ in self._all(service.list(params=params)))

    def customer_record(self, customer_id: str) -> dict[str, Any]:
        """The Stripe customer object as the API returns it."""
        result: dict[str, Any] = self.sdk.v1.customers.retrieve(customer_id).to_dict()
        return result

    def subscription_record(self, subscription_id: str) -> dict[str, Any]:
        """The Stripe subscription object as the API returns it."""
        result: dict[str, Any] = self.sdk.v1.subscriptions.retrieve(subscription_id).to_dict()
        return result

    def customer(self, customer_id: str) -> Customer:
        """Read by hand from the hub's metadata keys, not through the connector's mapping."""
        held = self.customer_record(customer_id)
        metadata = held.get("metadata") or {}
        address = held.get("address")
        external_ids = {"billing": customer_id}
        external_ids |= {
            system: metadata[key]
            for system, key in (("crm", "crm_account_id"), ("erp", "erp_customer_id"))
            if metadata.get(key)
        }
        return Customer(
            global_id=metadata.get("hub_global_id"),
            name=held["name"],
            email=held.get("email"),
            address=None
            if not address
            else Address(
                line1=address["line1"],
                city=address["city"],
                postal_code=address.get("postal_code"),
                country=address["country"],
            ),
            currency=metadata.get("preferred_currency"),
            external_ids=external_ids,
        )

    def subscription(self, subscription_id: str) -> HeldSubscription:
        held = self.subscription_record(subscription_id)
        metadata = held.get("metadata") or {}
        return HeldSubscription(
            customer=held["customer"],
            contract_number=metadata.get("contract_number"),
            global_id=metadata.get("hub_global_id"),
            items=tuple(
                HeldItem(item["id"], item["price"]["id"], item.get("quantity"))
                for item in held["items"]["data"]
            ),
            ends_at_period_end=bool(held.get("cancel_at_period_end")),
        )

    def invoices_of(self, subscription_id: str) -> list[str]:
        listing = self.sdk.v1.invoices.list(params={"subscription": subscription_id, "limit": 100})
        return [str(i.id) for i in listing.data]

    def payment_of(self, invoice_id: str) -> str:
        (paid,) = self.sdk.v1.invoice_payments.list(params={"invoice": invoice_id}).data
        assert paid.payment.payment_intent is not None
        return str(paid.payment.payment_intent)

    def pending_adjustments(self, customer_id: str, currency: str = "EUR") -> Money:
        items = self.sdk.v1.invoice_items.list(params={"customer": customer_id, "limit": 100})
        minor = sum(i.amount for i in items.data if i.invoice is None)
        return Money.from_stripe_amount(minor, currency)

    def invoice_total(self, invoice_id: str) -> Money:
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

    def fail_next_server_errors(self, requests: int) -> None:
        self.emulator.config.fail_next_500 = requests

    def pending_faults(self) -> int:
        """Injected failures not yet served (0 means the storm really hit)."""
        return self.emulator.config.fail_next_429 + self.emulator.config.fail_next_500

    def clear_faults(self) -> None:
        self.emulator.config.fail_next_429 = 0
        self.emulator.config.rate_limit_every_nth = None
        self.emulator.config.fail_next_500 = 0
        self.emulator.config.retry_after_seconds = 1
