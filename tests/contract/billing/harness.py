"""What the Billing contract needs of an implementation besides the role: set-up, observation
and faults, in neutral terms, and the registry of implementations it runs against.

To add an implementation, write a class satisfying ``BillingHarness`` and a context manager that
stands the system up once and yields a factory of harnesses, then add one entry to
``IMPLEMENTATIONS``; every scenario in this folder then runs against it too. Scenarios set the
stage through the harness, act through the ``Billing`` role only, and check the results through
the harness again -- never through the connector under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

from quote2cash.canonical import (
    Customer,
    Money,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from quote2cash.connectors.roles import Billing

T0 = datetime(2026, 1, 1, tzinfo=UTC)

Kind = Literal["customers", "subscriptions", "invoices"]


@dataclass(frozen=True)
class HeldItem:
    """One recurring item of a subscription as billing holds it."""

    id: str
    price: str
    quantity: int | None


@dataclass(frozen=True)
class HeldSubscription:
    """A subscription as billing holds it, read behind the connector's back."""

    customer: str
    contract_number: str | None
    global_id: str | None
    items: tuple[HeldItem, ...]
    ends_at_period_end: bool
    """Canceled at period end and not renewed since."""


class BillingHarness(Protocol):
    """One billing implementation as the contract drives it.

    Ids are the implementation's own (customers, prices, subscriptions, invoices, payments);
    a price may also be referenced by its ``key``. Amounts are ``Money`` / ``Decimal`` in
    currency units unless the name says otherwise.
    """

    name: str
    bad_secret: str
    """The secret ``billing_with_bad_secret`` uses: never to appear in an error."""

    @property
    def billing(self) -> Billing:
        """The connector under test, fresh for this test."""

    def reset(self) -> None:
        """Empty the system and clear every injected fault."""

    async def close(self) -> None:
        """Close every connector this harness built."""

    def billing_with_bad_secret(self) -> Billing:
        """A connector whose credentials billing rejects."""

    # --- set-up -------------------------------------------------------------------------------

    def start_clock(self, at: datetime = T0) -> str:
        """A test clock frozen at ``at``, for customers whose billing time the test moves."""

    def advance_clock(self, clock: str, to: datetime) -> None:
        """Move the clock; billing runs what falls due (renewals, invoices, payments)."""

    def seat_price(self, amount: str, currency: str = "EUR", *, key: str | None = None) -> str:
        """A licensed monthly per-seat price of ``amount`` currency units."""

    def prices(self, count: int, currency: str = "EUR") -> list[str]:
        """``count`` monthly prices, the n-th keyed ``bulk_<n>`` at 1.00 + n minor units."""

    def one_time_price(self, amount: str, currency: str = "EUR") -> str:
        """A price charged once, not renewed."""

    def metered_price(self, meter: str, unit_amount_minor: str, currency: str = "EUR") -> str:
        """A monthly price summing the usage reported on ``meter``, per unit in minor units."""

    def customer_with_card(self, *, clock: str | None = None, name: str = "Acme GmbH") -> Customer:
        """A billing customer with a working default card (optionally on a test clock)."""

    def give_card(self, customer_id: str) -> None:
        """Give an existing customer a working default card."""

    def customers_made_outside_the_hub(self, count: int) -> list[str]:
        """Customers created in billing directly (one event each), oldest first."""

    def refund(self, payment_id: str, amount: Money | None = None) -> None:
        """Refund part of a payment, or what is left of it."""

    # --- observation --------------------------------------------------------------------------

    def count(self, kind: Kind) -> int:
        """How many of these billing holds, whatever their status."""

    def customer(self, customer_id: str) -> Customer:
        """The customer as billing holds it, with the hub's cross references it keeps."""

    def subscription(self, subscription_id: str) -> HeldSubscription: ...

    def invoices_of(self, subscription_id: str) -> list[str]:
        """The subscription's invoice ids, newest first."""

    def invoice_total(self, invoice_id: str) -> Money:
        """The total billing itself computed for the invoice."""

    def payment_of(self, invoice_id: str) -> str:
        """The id of the one payment that paid the invoice."""

    def pending_adjustments(self, customer_id: str, currency: str = "EUR") -> Money:
        """Prorations and other adjustments waiting for the customer's next invoice."""

    def usage_total(self, price_id: str, customer_id: str) -> Decimal:
        """The usage billing counted for the customer on the metered price."""

    def event_ids_oldest_first(self) -> list[str]: ...

    # --- faults -------------------------------------------------------------------------------

    def rate_limit_next(self, requests: int, retry_after: int | None = 0) -> None:
        """Refuse the next ``requests`` calls as rate limited, asking to wait ``retry_after``."""

    def rate_limit_every(self, nth: int) -> None:
        """Refuse every ``nth`` call as rate limited, until cleared."""

    def fail_next_server_errors(self, requests: int) -> None:
        """Fail the next ``requests`` calls with a server error."""

    def pending_faults(self) -> int:
        """Injected failures not yet served (0 means the storm really hit)."""

    def clear_faults(self) -> None: ...


def subscription_for(
    customer: Customer | Ref,
    prices: list[tuple[str, int | None]],
    *,
    currency: str = "EUR",
    contract_number: str = "C-0001",
    global_id: str | None = None,
    start: datetime = T0,
) -> Subscription:
    """A subscription as the hub asks for it: items by price id / key and quantity."""
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


HarnessFactory = Callable[[], BillingHarness]


@contextmanager
def stripe_world() -> Iterator[HarnessFactory]:
    """Our Stripe emulator on a background thread, set up through the official SDK."""
    from .stripe_harness import running_stripe

    with running_stripe() as factory:
        yield factory


IMPLEMENTATIONS: dict[str, Callable[[], AbstractContextManager[HarnessFactory]]] = {
    "stripe": stripe_world,
}
"""Every Billing implementation the contract runs against: name -> how to stand one up."""
