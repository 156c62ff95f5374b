"""The determined tax rates reach Stripe once each (found by their code), become the subscription's
default tax rates, and the invoice the hub reads back carries billing's tax per line with its rate.
"""

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
    TaxRate,
    TaxTreatment,
)
from quote2cash.connectors.stripe import StripeBilling
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.errors import ConflictError
from quote2cash.masterdata import load_entities, load_tax

from .conftest import Sandbox

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TAX = load_tax(
    packaged_config_dir() / "tax.yaml", load_entities(packaged_config_dir() / "entities.yaml")
)


def _subscription(customer_id: str, prices: list[str], rates: tuple[TaxRate, ...]) -> Subscription:
    return Subscription(
        contract_number="C-TAX-1",
        customer=Ref.external("billing", customer_id),
        currency="EUR",
        status=SubscriptionStatus.INCOMPLETE,
        items=tuple(
            SubscriptionItem(price_plan=Ref.external("billing", p), quantity=1) for p in prices
        ),
        current_period_start=NOW,
        current_period_end=NOW + timedelta(days=31),
        tax_rates=rates,
    )


async def test_rates_are_created_once_and_the_invoice_carries_tax_per_line(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    vat = TAX.rate("DE-VAT-19")
    prices = [sandbox.seat_price(1050), sandbox.seat_price(2350)]
    first = await billing.create_subscription(
        _subscription(sandbox.customer(), prices, (vat,)), idempotency_key="evt-1:subscribe"
    )
    async with StripeBilling.for_sandbox(sandbox.base_url) as another_worker:
        await another_worker.create_subscription(
            _subscription(sandbox.customer(), prices, (vat,)), idempotency_key="evt-2:subscribe"
        )
    rates = sandbox.sdk.v1.tax_rates.list().data
    assert [(r.metadata["q2c_tax_code"], r.percentage, r.inclusive) for r in rates] == [
        ("DE-VAT-19", 19, False)
    ]
    stripe_sub = sandbox.sdk.v1.subscriptions.retrieve(first.id_in("billing") or "")
    assert [r.id for r in stripe_sub.default_tax_rates] == [rates[0].id]
    read_back = await billing.get_subscription(first.id_in("billing") or "")
    assert [(r.code, r.percentage) for r in read_back.tax_rates] == [("DE-VAT-19", Decimal(19))]
    invoice = await billing.get_invoice(str(stripe_sub.latest_invoice))
    by_amount = {line.amount.amount: line for line in invoice.lines}
    assert by_amount[Decimal("10.50")].tax == Money("2.00", "EUR")  # 1.995 rounded per line
    assert by_amount[Decimal("23.50")].tax == Money("4.47", "EUR")  # 4.465
    assert invoice.tax == Money("6.47", "EUR") and invoice.total == Money("40.47", "EUR")
    line_rate = by_amount[Decimal("10.50")].tax_rate
    assert line_rate is not None
    assert (line_rate.code, line_rate.percentage, line_rate.external_ids["billing"]) == (
        "DE-VAT-19",
        Decimal(19),
        rates[0].id,
    )


async def test_a_reverse_charged_customer_pays_no_tax_and_the_rate_says_why(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    reverse = TAX.rate("EU-VAT-RC")
    customer = sandbox.customer(tax_exempt="reverse")
    created = await billing.create_subscription(
        _subscription(customer, [sandbox.seat_price(4500)], (reverse,)), idempotency_key="evt-3"
    )
    stripe_sub = sandbox.sdk.v1.subscriptions.retrieve(created.id_in("billing") or "")
    invoice = await billing.get_invoice(str(stripe_sub.latest_invoice))
    [line] = invoice.lines
    assert (invoice.tax, line.tax) == (Money.zero("EUR"), Money.zero("EUR"))
    assert line.tax_rate is not None
    assert line.tax_rate.treatment is TaxTreatment.REVERSE_CHARGE and line.tax_rate.note


async def test_a_rate_changed_under_the_same_code_is_a_conflict(
    sandbox: Sandbox, billing: StripeBilling
) -> None:
    vat = TAX.rate("DE-VAT-19")
    sandbox.sdk.v1.tax_rates.create(
        params={
            "display_name": "VAT",
            "percentage": 16,
            "inclusive": False,
            "metadata": {"q2c_tax_code": "DE-VAT-19"},
        }
    )
    with pytest.raises(ConflictError, match=r"DE-VAT-19 is 19% .* Stripe's txr_\w+ is 16%"):
        await billing.create_subscription(
            _subscription(sandbox.customer(), [sandbox.seat_price()], (vat,)),
            idempotency_key="evt-4",
        )
