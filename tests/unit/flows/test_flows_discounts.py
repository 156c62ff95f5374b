"""A deal line's price as the percentage off billing's price that billing applies: exact for a
Discount % as Salesforce rounds it and for a sales price below billing's, refused (naming the line)
for an amount no two-decimal percentage gives or one above billing's price."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quote2cash.canonical import Interval, Money, PricePlan, Ref, SubscriptionItem, UsageType
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.errors import DataError
from quote2cash.flows.new_business import discount_percent
from quote2cash.masterdata import Catalog, load_catalog, parse_catalog
from unit.flows.test_flows_allocation import TEST_CATALOG, line, mapped_one

CONFIG = packaged_config_dir()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CONFIG / "catalog.yaml")


def test_no_discount_is_none(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 10, "45.00"))
    assert discount_percent(order, mapped) is None


def test_a_whole_percentage(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 10, "49.00", "73.50", "USD"))
    assert discount_percent(order, mapped) == Decimal("15.00")


def test_a_rounded_line_amount_still_gives_its_two_decimal_percentage(catalog: Catalog) -> None:
    # 12.5 % of 3 x 49.00 is 18.375: Salesforce's TotalPrice is 128.63 (half up), discount 18.37.
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 3, "49.00", "18.37", "USD"))
    assert discount_percent(order, mapped) == Decimal("12.50")


def test_a_bundle_takes_its_lines_percentage(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLATFORM-PRO", 10, "224.00", "224.00"))
    assert discount_percent(order, mapped) == Decimal("10.00")


def test_a_hand_typed_amount_is_refused_with_the_line_named(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 7, "45.00", "10.00"))
    with pytest.raises(DataError) as refused:
        discount_percent(order, mapped)
    text = str(refused.value)
    assert "C-ALLOC-1" in text and "lines[0] (PLAT-SEAT)" in text
    assert "3.1746% off the line's list total" in text and "at most two decimals" in text


def plan(unit: str, currency: str = "USD", usage: UsageType = UsageType.LICENSED) -> PricePlan:
    return PricePlan(
        external_ids={"billing": "price_1", "lookup_key": "plat_seat_monthly_usd"},
        product=Ref.external("billing", "prod_1"),
        currency=currency,
        unit_amount=Decimal(unit),
        interval=Interval.MONTH,
        usage_type=usage,
    )


def test_a_sales_price_below_billings_price_is_carried_as_its_percentage(
    catalog: Catalog,
) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 10, "44.10", currency="USD"))
    assert discount_percent(order, mapped, plan("49.00")) == Decimal("10.00")
    # The same line at billing's own price needs no discount.
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 10, "49.00", currency="USD"))
    assert discount_percent(order, mapped, plan("49.00")) is None


def test_a_typed_price_no_percentage_gives_or_above_billings_is_refused(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 10, "44.00", currency="USD"))
    with pytest.raises(DataError, match=r"10\.2041% off billing's price 49\.00 x 10"):
        discount_percent(order, mapped, plan("49.00"))
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 10, "52.00", currency="USD"))
    with pytest.raises(DataError, match=r"lines\[0\] \(PLAT-SEAT\).*only charge it or less"):
        discount_percent(order, mapped, plan("49.00"))


def test_a_metered_price_falls_back_to_the_lines_own_discount(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("API-CALLS", 1, "0.00", currency="USD"))
    assert discount_percent(order, mapped, plan("0.002", usage=UsageType.METERED)) is None


@settings(max_examples=300, deadline=None)
@given(
    quantity=st.integers(min_value=1, max_value=500),
    unit_cents=st.integers(min_value=1, max_value=10_000_000),
    basis_points=st.integers(min_value=1, max_value=10_000),
)
def test_every_two_decimal_percentage_comes_back(
    catalog: Catalog, quantity: int, unit_cents: int, basis_points: int
) -> None:
    """Whatever Salesforce's Discount % (two decimals) was, as long as it moved the amount."""
    unit = Money.from_minor(unit_cents, "EUR")
    gross = unit * quantity
    percent = Decimal(basis_points) / 100
    amount = Money.quantize(gross.amount * (100 - percent) / 100, "EUR")
    if amount == gross:
        return
    order, mapped = mapped_one(
        catalog, line("PLAT-SEAT", quantity, f"{unit.amount}", f"{(gross - amount).amount}")
    )
    found = discount_percent(order, mapped)
    assert found is not None
    # Several percentages may round to the same amount; each gives the line's amount exactly.
    again = gross.amount * (100 - found) / 100
    assert Money.quantize(again, "EUR") == amount
    assert found == found.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    SubscriptionItem(price_plan=Ref.external("billing", "p"), quantity=1, discount_percent=found)


def test_a_half_cent_amount_rounded_half_even_as_salesforce_does_is_accepted(
    catalog: Catalog,
) -> None:
    # 12.5 % off 23 x 49.00 is 986.125: Salesforce's TotalPrice is 986.12 (half-even).
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 23, "49.00", "140.88", "USD"))
    assert order.lines[0].amount == Money("986.12", "USD")
    assert discount_percent(order, mapped) == Decimal("12.50")
    # The same amount typed as a sales price below billing's 49.00 a seat.
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 23, "42.88", "0.12", "USD"))
    assert discount_percent(order, mapped, plan("49.00")) == Decimal("12.50")


@settings(max_examples=300, deadline=None)
@given(
    quantity=st.integers(min_value=1, max_value=500),
    unit_cents=st.integers(min_value=1, max_value=10_000_000),
    basis_points=st.integers(min_value=1, max_value=10_000),
)
def test_every_percentage_comes_back_from_salesforces_half_even_amount(
    catalog: Catalog, quantity: int, unit_cents: int, basis_points: int
) -> None:
    unit = Money.from_minor(unit_cents, "USD")
    gross = unit * quantity
    percent = Decimal(basis_points) / 100
    net = gross.amount * (100 - percent) / 100
    amount = Money.quantize(net, "USD", rounding=ROUND_HALF_EVEN)
    if amount == gross:
        return
    order, mapped = mapped_one(
        catalog, line("PLAT-SEAT", quantity, f"{unit.amount}", f"{(gross - amount).amount}")
    )
    found = discount_percent(order, mapped)
    assert found is not None and found == found.quantize(Decimal("0.01"))


def test_a_bundle_is_measured_against_what_billing_charges_for_its_items() -> None:
    """A per-line component is billed once: a CRM price of n x (A + C) for n > 1 units is more
    than billing charges and is refused before any system is written; below it, a discount."""
    bundle = parse_catalog(TEST_CATALOG)
    units = {"p_a": Decimal("40.00"), "p_c": Decimal("60.00")}
    order, mapped = mapped_one(bundle, line("DOUBLE", 1, "140.00"))
    assert discount_percent(order, mapped, None, units) is None  # 2 x 40.00 + 60.00
    order, mapped = mapped_one(bundle, line("DOUBLE", 3, "140.00"))
    with pytest.raises(DataError, match=r"lines\[0\] \(DOUBLE\).*is 420\.00 EUR; billing's prices"):
        discount_percent(order, mapped, None, units)
    order, mapped = mapped_one(bundle, line("DOUBLE", 3, "100.00", "60.00"))  # 240.00 of 300.00
    assert discount_percent(order, mapped, None, units) == Decimal("20.00")
