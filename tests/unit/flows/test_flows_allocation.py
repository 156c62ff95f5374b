"""Booking a deal line in the ERP: a bundle's amount split across its items by relative standalone
selling price, to the cent, adding up exactly; single-item lines keep their amount and item.

Order lines come from the real catalog (config/catalog.yaml) or a small test catalog, mapped by
``Catalog.map_order_lines`` as the flows map them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quote2cash.canonical import Money, Order, OrderLine, Ref
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.errors import DataError, MappingError
from quote2cash.flows.allocation import (
    SeatPrice,
    allocate_line,
    billed,
    billed_parts,
    component_amounts,
    seat_billing_prices,
    seat_prices_of,
)
from quote2cash.masterdata import Catalog, MappedOrderLine, load_catalog, parse_catalog

CONFIG = packaged_config_dir()
PROPS = settings(max_examples=300, deadline=None)

# Standalone prices as the sandbox seeds them (quote2cash.sandbox.seed), per lookup key.
EUR_PRICES = {
    "plat_seat_monthly_eur": Decimal("45.00"),
    "support_prem_monthly_eur": Decimal("179.00"),
}

TEST_CATALOG = """
version: 1
catalog:
  - code: TRIO
    kind: bundle
    versions:
      - effective_from: 2026-01-01
        billing: [{price: p_a}, {price: p_b}, {price: p_c, per: line}]
        erp: [{item: A}, {item: B}, {item: C, per: line}]
  - code: DOUBLE
    kind: bundle
    versions:
      - effective_from: 2026-01-01
        billing: [{price: p_a, quantity: 2}, {price: p_c, per: line}]
        erp: [{item: A, quantity: 2}, {item: C, per: line}]
  - code: LOPSIDED
    kind: bundle
    versions:
      - effective_from: 2026-01-01
        billing: [{price: p_a}]
        erp: [{item: A}, {item: B}]
  - code: SOLO
    kind: product
    versions:
      - effective_from: 2026-01-01
        billing: [{price: p_a, quantity: 3}]
        erp: [{item: A, quantity: 3}]
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CONFIG / "catalog.yaml")


@pytest.fixture(scope="module")
def test_catalog() -> Catalog:
    return parse_catalog(TEST_CATALOG)


def line(
    code: str,
    quantity: int,
    unit_price: str,
    discount: str | None = None,
    currency: str = "EUR",
) -> OrderLine:
    unit = Money(unit_price, currency)
    off = Money(discount, currency) if discount is not None else None
    gross = unit * quantity
    return OrderLine(
        external_ids={"crm": f"00k-{code}"},
        product=Ref(external_ids={"product_code": code, "crm": f"01t-{code}"}),
        price_plan=Ref.external("billing", f"price_{code}"),
        description=f"{code} line",
        quantity=quantity,
        unit_price=unit,
        discount=off,
        amount=gross - off if off is not None else gross,
    )


def mapped_one(catalog: Catalog, order_line: OrderLine) -> tuple[Order, MappedOrderLine]:
    order = Order(
        number="C-ALLOC-1",
        customer=Ref.external("crm", "001-ALLOC"),
        currency=order_line.amount.currency,
        start_date=date(2026, 3, 1),
        lines=(order_line,),
    )
    [mapped] = catalog.map_order_lines(order)
    return order, mapped


def summary(lines: list[OrderLine]) -> list[tuple[str | None, int, str, str | None, str]]:
    return [
        (
            ol.product.id_in("item_code"),
            ol.quantity,
            f"{ol.unit_price.amount:f}",
            None if ol.discount is None else f"{ol.discount.amount:f}",
            f"{ol.amount.amount:f}",
        )
        for ol in lines
    ]


# --- the sandbox's PLATFORM-PRO bundle ---------------------------------------------------------


def test_discounted_bundle_splits_by_standalone_price_and_adds_up_exactly(
    catalog: Catalog,
) -> None:
    # 10 seats at 224.00 less 82.88 (3.7 %): 2157.12, split 450 (10 x 45.00) : 1790 (10 x 179.00).
    order, mapped = mapped_one(catalog, line("PLATFORM-PRO", 10, "224.00", discount="82.88"))
    lines = allocate_line(order, mapped, EUR_PRICES)
    # Exact shares 433.35 and 1723.77 (what billing charges each item at 3.7 % off); unit prices
    # are rounded up, the rest a discount.
    assert summary(lines) == [
        ("PLAT-SEAT", 10, "43.34", "0.05", "433.35"),
        ("SUPPORT-PREM", 10, "172.38", "0.03", "1723.77"),
    ]
    assert Money.sum((ol.amount for ol in lines), "EUR") == mapped.line.amount
    assert [ol.description for ol in lines] == [
        "PLATFORM-PRO line - PLAT-SEAT",
        "PLATFORM-PRO line - SUPPORT-PREM",
    ]
    assert all(ol.price_plan is None for ol in lines)


def test_undiscounted_bundle_splits_exactly(catalog: Catalog) -> None:
    # 2 units at 224.00 = 448.00: two seats (90.00) and two support plans (358.00), exactly.
    order, mapped = mapped_one(catalog, line("PLATFORM-PRO", 2, "224.00"))
    lines = allocate_line(order, mapped, EUR_PRICES)
    assert summary(lines) == [
        ("PLAT-SEAT", 2, "45.00", None, "90.00"),
        ("SUPPORT-PREM", 2, "179.00", None, "358.00"),
    ]
    assert lines[0].amount + lines[1].amount == Money("448.00", "EUR")


def test_a_multi_unit_bundle_is_booked_as_billing_charges_it(catalog: Catalog) -> None:
    """Bundle lines of n > 1 units: the ERP components equal billing's charge for the items
    (n seats and n support plans, each less the percent rounded half up) and the CRM amount."""
    for units in range(1, 40):
        for percent in (None, Decimal("12.50"), Decimal("3.70")):
            gross = Money("224.00", "EUR") * units
            off = Money.quantize(gross.amount * (percent or 0) / 100, "EUR")
            order, mapped = mapped_one(
                catalog, line("PLATFORM-PRO", units, "224.00", f"{off.amount}" if percent else None)
            )
            parts = billed_parts(order, mapped, EUR_PRICES, percent)
            assert parts is not None
            assert parts == [
                billed(Decimal("45.00"), units, percent, "EUR"),
                billed(Decimal("179.00"), units, percent, "EUR"),
            ]
            lines = allocate_line(order, mapped, EUR_PRICES, parts)
            assert [ol.amount for ol in lines] == parts
            assert [ol.quantity for ol in lines] == [units, units]
            if percent is None:
                assert Money.sum(parts, "EUR") == mapped.line.amount


def test_billing_rounds_a_percent_per_line_half_up() -> None:
    # 31 seats at 49.00 less 12.5 %: 1519.00 - 189.875 -> 189.88 off, 1329.12 (not 1329.13).
    assert billed(Decimal("49.00"), 31, Decimal("12.50"), "USD") == Money("1329.12", "USD")
    assert billed(Decimal("49.00"), 23, Decimal("12.50"), "USD") == Money("986.12", "USD")
    assert billed(Decimal("0.5"), 3, None, "USD") == Money("1.50", "USD")


def test_single_item_line_keeps_its_amount_item_and_ids(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 5, "45.00"))
    [erp] = allocate_line(order, mapped, {})  # no standalone price is needed
    assert summary([erp]) == [("PLAT-SEAT", 5, "45.00", None, "225.00")]
    assert erp.external_ids == mapped.line.external_ids
    assert erp.price_plan == mapped.line.price_plan
    assert erp.description == "PLAT-SEAT line"


@pytest.mark.parametrize(
    ("discount", "expected"),
    [
        ("10.00", ("PLAT-SEAT", 5, "43.00", None, "215.00")),
        ("10.01", ("PLAT-SEAT", 5, "43.00", "0.01", "214.99")),
        ("0.04", ("PLAT-SEAT", 5, "45.00", "0.04", "224.96")),
    ],
)
def test_discounted_single_item_is_a_valid_line_of_the_same_amount(
    catalog: Catalog, discount: str, expected: tuple[str, int, str, str | None, str]
) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 5, "45.00", discount=discount))
    assert summary(allocate_line(order, mapped, {})) == [expected]


def test_single_item_with_a_multiplier_books_its_units(test_catalog: Catalog) -> None:
    order, mapped = mapped_one(test_catalog, line("SOLO", 4, "10.00"))
    assert summary(allocate_line(order, mapped, {})) == [("A", 12, "3.34", "0.08", "40.00")]


# --- exactness over many amounts and weights --------------------------------------------------


@PROPS
@given(
    quantity=st.integers(min_value=1, max_value=500),
    unit_cents=st.integers(min_value=0, max_value=10_000_000),
    discount_share=st.fractions(min_value=0, max_value=1),
    prices=st.lists(st.integers(min_value=0, max_value=50_000_000), min_size=3, max_size=3).filter(
        any
    ),
)
def test_parts_add_up_exactly_and_every_line_is_valid(
    test_catalog: Catalog,
    quantity: int,
    unit_cents: int,
    discount_share: Fraction,
    prices: list[int],
) -> None:
    unit = Money.from_minor(unit_cents, "EUR")
    gross = unit * quantity
    discount = Money.from_minor(int(gross.minor_units * discount_share), "EUR")
    order_line = OrderLine(
        product=Ref(external_ids={"product_code": "TRIO"}),
        quantity=quantity,
        unit_price=unit,
        discount=None if discount.is_zero() else discount,
        amount=gross - discount,
    )
    order, mapped = mapped_one(test_catalog, order_line)
    keys = ("p_a", "p_b", "p_c")
    amounts = {key: Decimal(cents).scaleb(-4) for key, cents in zip(keys, prices, strict=True)}
    lines = allocate_line(order, mapped, amounts)
    assert Money.sum((ol.amount for ol in lines), "EUR") == order_line.amount
    weights = [amounts[p] * q for (p, _), (_, q) in zip(mapped.billing, mapped.erp, strict=True)]
    total_weight = sum(weights)
    for ol, weight in zip(lines, weights, strict=True):
        exact = Decimal(order_line.amount.minor_units) * weight / total_weight
        assert abs(Decimal(ol.amount.minor_units) - exact) < 1
        assert ol.unit_price * ol.quantity - (ol.discount or Money.zero("EUR")) == ol.amount
        if ol.discount is not None:
            assert Money.zero("EUR") < ol.discount < Money.from_minor(ol.quantity, "EUR")


@pytest.mark.parametrize(
    ("amount", "prices", "expected"),
    [
        ("0.01", ("1.00", "1.00", "0"), ["0.01", "0.00", "0.00"]),
        ("0.02", ("1.00", "1.00", "1.00"), ["0.01", "0.01", "0.00"]),
        ("1.00", ("2.00", "2.00", "2.00"), ["0.34", "0.33", "0.33"]),
        ("1.00", ("1.00", "2.00", "1.00"), ["0.25", "0.50", "0.25"]),
        ("0.05", ("1.00", "3.00", "0"), ["0.01", "0.04", "0.00"]),
        ("-1.00", ("2.00", "2.00", "2.00"), ["-0.34", "-0.33", "-0.33"]),
    ],
)
def test_largest_remainder_gives_leftover_cents_to_the_earliest_on_ties(
    test_catalog: Catalog, amount: str, prices: tuple[str, str, str], expected: list[str]
) -> None:
    money = Money(amount, "EUR")
    order_line = OrderLine(
        product=Ref(external_ids={"product_code": "TRIO"}),
        quantity=1,
        unit_price=money,
        amount=money,
    )
    order, mapped = mapped_one(test_catalog, order_line)
    unit_amounts = dict(zip(("p_a", "p_b", "p_c"), map(Decimal, prices), strict=True))
    parts = component_amounts(order, mapped, unit_amounts)
    assert [f"{p.amount:f}" for p in parts] == expected
    lines = allocate_line(order, mapped, unit_amounts)
    assert [f"{ol.amount.amount:f}" for ol in lines] == expected


# --- what cannot be split ----------------------------------------------------------------------


def test_bundle_whose_components_do_not_pair_is_a_mapping_error(test_catalog: Catalog) -> None:
    order, mapped = mapped_one(test_catalog, line("LOPSIDED", 2, "10.00"))
    with pytest.raises(MappingError) as raised:
        allocate_line(order, mapped, {"p_a": Decimal("5")})
    message = str(raised.value)
    assert message.startswith("Order C-ALLOC-1: line 0 (LOPSIDED): ")
    assert "1 billing components (p_a) but 2 ERP components (A, B)" in message


def test_unknown_billing_price_names_the_component(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLATFORM-PRO", 3, "224.00"))
    with pytest.raises(MappingError) as raised:
        allocate_line(order, mapped, {"plat_seat_monthly_eur": Decimal("45.00")})
    assert str(raised.value) == (
        "Order C-ALLOC-1: line 0 (PLATFORM-PRO): component 1 (SUPPORT-PREM): billing price "
        "'support_prem_monthly_eur' is not in billing's price list in EUR; expected its "
        "standalone price"
    )


def test_all_zero_weights_cannot_split_an_amount(test_catalog: Catalog) -> None:
    order, mapped = mapped_one(test_catalog, line("TRIO", 2, "10.00"))
    zero = {"p_a": Decimal(0), "p_b": Decimal("0.00"), "p_c": Decimal(0)}
    with pytest.raises(MappingError) as raised:
        allocate_line(order, mapped, zero)
    message = str(raised.value)
    assert message.startswith("Order C-ALLOC-1: line 0 (TRIO): components A, B, C all weigh zero")
    assert "cannot split 20.00 EUR" in message
    # A zero amount needs no weights: every part is zero.
    order, mapped = mapped_one(test_catalog, line("TRIO", 2, "0.00"))
    assert summary(allocate_line(order, mapped, zero)) == [
        ("A", 2, "0.00", None, "0.00"),
        ("B", 2, "0.00", None, "0.00"),
        ("C", 1, "0.00", None, "0.00"),
    ]


def test_negative_standalone_price_is_a_mapping_error(test_catalog: Catalog) -> None:
    order, mapped = mapped_one(test_catalog, line("TRIO", 1, "10.00"))
    with pytest.raises(MappingError, match=r"component 1 \(B\): billing price 'p_b' has unit"):
        allocate_line(order, mapped, {"p_a": Decimal(1), "p_b": Decimal(-1), "p_c": Decimal(1)})


# --- what a seat change moves -------------------------------------------------------------------


def test_seat_change_of_a_bundle_moves_every_per_unit_item(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLATFORM-PRO", 10, "224.00", discount="82.88"))
    assert seat_billing_prices(mapped) == [
        ("plat_seat_monthly_eur", 1),
        ("support_prem_monthly_eur", 1),
    ]
    moved = seat_prices_of(order, mapped, EUR_PRICES, Decimal("3.70"))
    assert [(s.item, s.per_seat, s.billing_unit) for s in moved] == [
        ("PLAT-SEAT", 1, Decimal("45.00")),
        ("SUPPORT-PREM", 1, Decimal("179.00")),
    ]
    # 10 -> 12 seats, as billing charges it: (540 - 19.98) - 433.35 and (2148 - 79.48) - 1723.77.
    assert [s.moved(10, 12) for s in moved] == [Money("86.67", "EUR"), Money("344.75", "EUR")]


def test_seat_changes_add_up_to_billings_charge_for_the_final_quantity() -> None:
    """Bookings rounded per change drifted from billing's charge (1329.21 booked vs 1329.12);
    each change now books billing's charge after less its charge before."""
    seat = SeatPrice("PLAT-SEAT", 1, Money("42.87", "USD"), Decimal("49.00"), Decimal("12.50"))
    initial = billed(Decimal("49.00"), 23, Decimal("12.50"), "USD")
    path = [23, 24, 31, 27, 31]
    booked = initial + Money.sum((seat.moved(a, b) for a, b in pairwise(path)), "USD")
    assert (
        booked == billed(Decimal("49.00"), 31, Decimal("12.50"), "USD") == Money("1329.12", "USD")
    )


def test_seat_change_with_several_units_per_seat(test_catalog: Catalog) -> None:
    # 3 seats at 100.00: A weighs 2 x 3 x 40.00 = 240, C 1 x 60.00 = 60 -> A gets 240.00.
    order, mapped = mapped_one(test_catalog, line("DOUBLE", 3, "100.00"))
    prices = {"p_a": Decimal("40.00"), "p_c": Decimal("60.00")}
    assert seat_billing_prices(mapped) == [("p_a", 2)]  # the per-line C stays as booked
    assert seat_prices_of(order, mapped, prices) == [
        SeatPrice("A", 2, Money("40.00", "EUR"), Decimal("40.00"))
    ]


def test_seat_change_of_a_single_item_is_priced_as_before(
    catalog: Catalog, test_catalog: Catalog
) -> None:
    order, mapped = mapped_one(catalog, line("PLAT-SEAT", 5, "45.00", discount="0.01"))
    assert seat_billing_prices(mapped) == [("plat_seat_monthly_eur", 1)]
    assert seat_prices_of(order, mapped, {}) == [SeatPrice("PLAT-SEAT", 1, Money("45.00", "EUR"))]
    order, mapped = mapped_one(test_catalog, line("SOLO", 4, "10.00"))
    assert seat_billing_prices(mapped) == [("p_a", 3)]
    assert seat_prices_of(order, mapped, {}) == [SeatPrice("A", 3, Money("3.33", "EUR"))]


def test_seat_change_of_a_line_without_seats_is_a_data_error(catalog: Catalog) -> None:
    order, mapped = mapped_one(catalog, line("PLATFORM-PRO", 0, "224.00"))
    with pytest.raises(DataError, match=r"line 0 \(PLATFORM-PRO\) has quantity 0"):
        seat_prices_of(order, mapped, EUR_PRICES)
