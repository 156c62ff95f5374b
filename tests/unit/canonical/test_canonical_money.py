"""Money: strict parsing, explicit rounding, currency-safe arithmetic, exact allocation."""

from __future__ import annotations

import copy
import pickle
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from quote2cash.canonical import (
    MINOR_UNITS,
    STRIPE_EXPONENTS,
    CurrencyMismatchError,
    Money,
    MoneyError,
    minor_unit,
)
from unit.canonical.canonical_strategies import any_money, currencies, money

PROPS = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("19.99", "USD", "19.99"),
        (5, "USD", "5.00"),
        (Decimal("1.5"), "KWD", "1.500"),
        ("100", "JPY", "100"),
        ("100.00", "JPY", "100"),
        ("19.990", "USD", "19.99"),
        (" 7.10 ", "EUR", "7.10"),
        ("-0.00", "USD", "0.00"),
        ("-12.34", "GBP", "-12.34"),
        ("1e2", "USD", "100.00"),
        ("0.1234", "CLF", "0.1234"),
        ("3.141", "BHD", "3.141"),
    ],
)
def test_accepts_exact_amounts_and_pads_to_the_minor_unit(
    amount: object, currency: str, expected: str
) -> None:
    value = Money(amount, currency)  # type: ignore[arg-type]
    assert format(value.amount, "f") == expected
    assert value.currency == currency
    assert str(value) == f"{expected} {currency}"


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (19.99, "USD", "amount must be a decimal string or Decimal, not float"),
        (1.0, "JPY", "not float"),
        ("19.999", "USD", "amount 19.999 has more decimal places than USD allows (2)"),
        ("1.5", "JPY", "amount 1.5 has more decimal places than JPY allows (0)"),
        ("1.2345", "KWD", "than KWD allows (3)"),
        ("1", "usd", "got 'usd', expected 'USD'"),
        ("1", "XYZ", "known ISO 4217 code (3 uppercase letters, e.g. 'USD'), got 'XYZ'"),
        ("1", "", "got ''"),
        ("1", None, "got None"),
        ("NaN", "USD", "finite number"),
        ("Infinity", "USD", "finite number"),
        (Decimal("sNaN"), "USD", "finite number"),
        ("abc", "USD", "decimal string, got 'abc'"),
        ("", "USD", "decimal string, got ''"),
        (True, "USD", "not bool"),
        (None, "USD", "not NoneType"),
        ([1], "USD", "not list"),
        ("1e100", "USD", "too large for USD"),
    ],
)
def test_refuses_what_is_not_exact_money(amount: object, currency: object, message: str) -> None:
    with pytest.raises(MoneyError) as raised:
        Money(amount, currency)  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_money_errors_are_value_errors_so_pydantic_reports_them_per_field() -> None:
    assert issubclass(MoneyError, ValueError)
    assert issubclass(CurrencyMismatchError, MoneyError)


@pytest.mark.parametrize(
    ("amount", "currency", "rounding", "expected"),
    [
        ("0.005", "USD", None, "0.01"),
        ("0.015", "USD", None, "0.02"),
        ("0.025", "USD", None, "0.03"),
        ("-0.005", "USD", None, "-0.01"),
        ("0.0049", "USD", None, "0.00"),
        ("-0.004", "USD", None, "0.00"),
        ("2.5", "JPY", None, "3"),
        ("1.0005", "KWD", None, "1.001"),
        ("0.025", "USD", ROUND_HALF_EVEN, "0.02"),
        ("0.019", "USD", ROUND_DOWN, "0.01"),
    ],
)
def test_quantize_rounds_half_up_unless_told(
    amount: str, currency: str, rounding: str | None, expected: str
) -> None:
    if rounding is None:
        result = Money.quantize(amount, currency)
        assert Money.of(amount, currency, rounding="ROUND_HALF_UP") == result
    else:
        result = Money.quantize(amount, currency, rounding=rounding)
    assert format(result.amount, "f") == expected


def test_of_is_strict_without_rounding() -> None:
    assert Money.of("1.10", "USD") == Money("1.1", "USD")
    with pytest.raises(MoneyError, match="more decimal places"):
        Money.of("1.105", "USD")
    assert Money.of("1.105", "USD", rounding=ROUND_HALF_EVEN) == Money("1.10", "USD")


def test_quantize_still_refuses_floats() -> None:
    with pytest.raises(MoneyError, match="not float"):
        Money.quantize(0.1, "USD")  # type: ignore[arg-type]


def test_add_and_subtract_within_one_currency() -> None:
    assert Money("10.10", "EUR") + Money("0.95", "EUR") == Money("11.05", "EUR")
    assert Money("10.10", "EUR") - Money("20.20", "EUR") == Money("-10.10", "EUR")
    assert -Money("3.50", "EUR") == Money("-3.50", "EUR")
    assert abs(Money("-3.50", "EUR")) == Money("3.50", "EUR")
    assert Money.sum([Money("1.00", "USD"), Money("2.50", "USD")], "USD") == Money("3.50", "USD")
    assert Money.sum([], "JPY") == Money.zero("JPY")
    assert str(Money.zero("KWD")) == "0.000 KWD"


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a >= b,
        lambda a, b: Money.sum([a, b], "USD"),
    ],
)
def test_mixing_currencies_is_refused_with_both_amounts_named(operation: object) -> None:
    with pytest.raises(CurrencyMismatchError) as raised:
        operation(Money("1.00", "USD"), Money("1.00", "EUR"))  # type: ignore[operator]
    assert "1.00 USD" in str(raised.value)
    assert "1.00 EUR" in str(raised.value)
    assert "USD != EUR" in str(raised.value)


def test_equality_needs_same_currency_and_amount() -> None:
    assert Money("1.00", "USD") != Money("1.00", "EUR")
    assert Money("1", "USD") == Money("1.00", "USD")
    assert Money("1.00", "USD") != Decimal("1.00")
    assert len({Money("1", "USD"), Money("1.00", "USD"), Money("1.00", "CAD")}) == 2


def test_ordering() -> None:
    low, high = Money("1.00", "USD"), Money("2.00", "USD")
    assert low < high <= high
    assert high > low >= low
    assert sorted([high, low]) == [low, high]
    assert low.is_positive() and not low.is_negative() and not low.is_zero()
    assert Money("0", "USD").is_zero()
    with pytest.raises(TypeError):
        _ = low < 2  # type: ignore[operator]


@pytest.mark.parametrize(
    ("amount", "factor", "expected"),
    [
        ("19.99", 3, "59.97"),
        ("19.99", Decimal("0.5"), "10.00"),
        ("0.01", Decimal("0.5"), "0.01"),
        ("10.00", Decimal("0.333"), "3.33"),
        ("-0.01", Decimal("0.5"), "-0.01"),
    ],
)
def test_multiply_rounds_half_up(amount: str, factor: Decimal | int, expected: str) -> None:
    assert Money(amount, "USD") * factor == Money(expected, "USD")
    assert factor * Money(amount, "USD") == Money(expected, "USD")


def test_multiply_refuses_floats_bools_and_money() -> None:
    with pytest.raises(MoneyError, match=r"by float 1\.5"):
        _ = Money("1.00", "USD") * 1.5
    with pytest.raises(TypeError):
        _ = Money("1.00", "USD") * True
    with pytest.raises(TypeError):
        _ = Money("1.00", "USD") * Money("1.00", "USD")  # type: ignore[operator]
    assert Money("1.00", "USD").multiply("1.005") == Money("1.01", "USD")
    assert Money("1.00", "USD").multiply(Decimal("1.005"), rounding=ROUND_DOWN) == Money(
        "1.00", "USD"
    )


def test_is_immutable_and_copies_and_pickles() -> None:
    price = Money("9.99", "USD")
    with pytest.raises(AttributeError, match="immutable"):
        price.amount = Decimal(1)  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del price.currency
    assert pickle.loads(pickle.dumps(price)) == price
    assert copy.deepcopy(price) == price
    assert repr(price) == "Money('9.99', 'USD')"


@pytest.mark.parametrize(
    ("units", "currency", "amount"),
    [
        (1999, "USD", "19.99"),
        (-5, "EUR", "-0.05"),
        (500, "JPY", "500"),
        (1234, "KWD", "1.234"),
        (0, "BHD", "0.000"),
        (10**20, "USD", "1000000000000000000.00"),
    ],
)
def test_minor_units_both_ways(units: int, currency: str, amount: str) -> None:
    value = Money.from_minor(units, currency)
    assert value == Money(amount, currency)
    assert format(value.amount, "f") == amount
    assert value.minor_units == units


def test_from_minor_refuses_what_it_cannot_hold_exactly() -> None:
    with pytest.raises(MoneyError, match="too large for USD"):
        Money.from_minor(10**70 + 1, "USD")


@pytest.mark.parametrize("units", [19.99, "1999", True, None])
def test_from_minor_wants_an_int(units: object) -> None:
    with pytest.raises(MoneyError, match="minor units must be an int"):
        Money.from_minor(units, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stripe_amount", "currency", "money"),
    [
        (1999, "usd", Money("19.99", "USD")),
        (500, "jpy", Money("500", "JPY")),
        (500, "isk", Money("5", "ISK")),
        (1000, "mga", Money("1000", "MGA")),
        (5120, "kwd", Money("5.120", "KWD")),
        (1999, "EUR", Money("19.99", "EUR")),
    ],
)
def test_stripe_amounts_follow_stripes_exponents(
    stripe_amount: int, currency: str, money: Money
) -> None:
    assert Money.from_stripe_amount(stripe_amount, currency) == money
    assert money.stripe_amount == stripe_amount


def test_stripe_amounts_that_do_not_fit_are_refused() -> None:
    with pytest.raises(MoneyError, match="more decimal places than ISK allows"):
        Money.from_stripe_amount(550, "isk")
    with pytest.raises(MoneyError, match="whole MGA only"):
        _ = Money("10.50", "MGA").stripe_amount
    with pytest.raises(MoneyError, match="known ISO 4217"):
        Money.from_stripe_amount(100, "zzz")


@pytest.mark.parametrize(
    ("total", "ratios", "parts"),
    [
        ("100.00", [1, 1, 1], ["33.34", "33.33", "33.33"]),
        ("0.05", [1, 1, 1], ["0.02", "0.02", "0.01"]),
        ("-0.05", [1, 1, 1], ["-0.02", "-0.02", "-0.01"]),
        ("10.00", [0, 1], ["0.00", "10.00"]),
        ("10.00", [Decimal("0.7"), Decimal("0.3")], ["7.00", "3.00"]),
        ("100.00", [31, 28, 31], ["34.45", "31.11", "34.44"]),
        ("0.01", [1, 1], ["0.01", "0.00"]),
        ("1.00", ["1", "2"], ["0.33", "0.67"]),
    ],
)
def test_allocate_sums_exactly_with_largest_remainders(
    total: str, ratios: list[object], parts: list[str]
) -> None:
    result = Money(total, "USD").allocate(ratios)  # type: ignore[arg-type]
    assert result == [Money(p, "USD") for p in parts]
    assert Money.sum(result, "USD") == Money(total, "USD")


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ([], "at least one ratio"),
        ([1, -1], "must not be negative"),
        ([0, 0], "must not all be zero"),
        ([0.5, 0.5], "ratio must be a decimal string or Decimal, not float"),
    ],
)
def test_allocate_refuses_bad_ratios(ratios: list[object], message: str) -> None:
    with pytest.raises(MoneyError, match=message):
        Money("1.00", "USD").allocate(ratios)  # type: ignore[arg-type]


def test_split() -> None:
    assert Money("10", "JPY").split(3) == [Money(4, "JPY"), Money(3, "JPY"), Money(3, "JPY")]
    for bad in (0, -1, True, 1.0):
        with pytest.raises(MoneyError, match="positive int"):
            Money("10", "JPY").split(bad)  # type: ignore[arg-type]


def test_currency_table_covers_stripe_special_currencies() -> None:
    zero = ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"]
    zero += ["VUV", "XAF", "XOF", "XPF"]
    three = ["BHD", "JOD", "KWD", "OMR", "TND"]
    assert {c: MINOR_UNITS[c] for c in zero} == dict.fromkeys(zero, 0)
    assert {c: MINOR_UNITS[c] for c in three} == dict.fromkeys(three, 3)
    assert minor_unit("USD") == 2
    assert minor_unit("ISK") == 0
    assert STRIPE_EXPONENTS["ISK"] == 2
    assert STRIPE_EXPONENTS["MGA"] == 0
    assert len(MINOR_UNITS) > 150
    assert all(len(c) == 3 and c.isupper() and c.isalpha() for c in MINOR_UNITS)


class _Priced(BaseModel):
    price: Money


def test_money_field_parses_and_dumps_strings_never_numbers() -> None:
    priced = _Priced.model_validate_json('{"price": {"amount": "19.99", "currency": "USD"}}')
    assert priced.price == Money("19.99", "USD")
    assert priced.model_dump_json() == '{"price":{"amount":"19.99","currency":"USD"}}'
    assert _Priced.model_validate_json('{"price": {"amount": 5, "currency": "EUR"}}').price == (
        Money("5.00", "EUR")
    )
    schema = _Priced.model_json_schema()
    assert schema["properties"]["price"]["properties"]["amount"]["type"] == "string"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"price": {"amount": 19.99, "currency": "USD"}}', "not float"),
        ('{"price": {"amount": "1", "currency": "usd"}}', "expected 'USD'"),
        ('{"price": {"amount": "1"}}', "exactly the keys 'amount' and 'currency'"),
        ('{"price": {"amount": "1", "currency": "USD", "x": 1}}', "exactly the keys"),
        ('{"price": "19.99 USD"}', "money must be Money or {'amount'"),
    ],
)
def test_money_field_errors_name_the_field(payload: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        _Priced.model_validate_json(payload)
    assert raised.value.errors()[0]["loc"] == ("price",)
    assert message in str(raised.value)


# --- properties -------------------------------------------------------------------------------


@PROPS
@given(
    data=st.data(),
    ratios=st.lists(
        st.integers(0, 1000) | st.decimals(min_value=0, max_value=1000, places=3),
        min_size=1,
        max_size=12,
    ).filter(lambda r: sum(r) > 0),
)
def test_allocate_always_sums_exactly_and_stays_fair(data: st.DataObject, ratios: list) -> None:
    total: Money = data.draw(any_money)
    parts = total.allocate(ratios)

    assert len(parts) == len(ratios)
    assert Money.sum(parts, total.currency) == total
    weight = sum(Decimal(r) for r in ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        exact_units = abs(total.minor_units) * Decimal(ratio) / weight
        assert abs(abs(part.minor_units) - exact_units) < 1
        assert not (part.is_positive() and total.is_negative())
        if ratio == 0:
            assert part.is_zero()


@PROPS
@given(data=st.data(), currency=currencies)
def test_add_sub_are_associative_commutative_and_inverse(
    data: st.DataObject, currency: str
) -> None:
    a, b, c = (data.draw(money(currency)) for _ in range(3))
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a - b) + b == a
    assert a - a == Money.zero(currency)
    assert (a + b).amount.as_tuple().exponent == -MINOR_UNITS[currency]


@PROPS
@given(currency=currencies, units=st.integers(-(10**30), 10**30))
def test_minor_units_round_trip(currency: str, units: int) -> None:
    value = Money.from_minor(units, currency)
    assert value.minor_units == units
    assert Money(format(value.amount, "f"), currency) == value
    assert Money.from_minor(value.minor_units, currency) == value


@PROPS
@given(currency=currencies, amount=st.decimals(min_value=-(10**40), max_value=10**40, places=8))
def test_quantize_lands_within_half_a_minor_unit_and_is_idempotent(
    currency: str, amount: Decimal
) -> None:
    rounded = Money.quantize(amount, currency)
    half = Decimal(1).scaleb(-MINOR_UNITS[currency]) / 2
    assert abs(rounded.amount - amount) <= half
    assert Money.quantize(rounded.amount, currency) == rounded
    assert Money(rounded.amount, currency) == rounded


@PROPS
@given(data=st.data(), factor=st.integers(0, 10**6))
def test_multiply_by_int_is_repeated_addition(data: st.DataObject, factor: int) -> None:
    price: Money = data.draw(any_money)
    assert price * factor == Money.from_minor(price.minor_units * factor, price.currency)


@PROPS
@given(data=st.data())
def test_money_json_round_trip(data: st.DataObject) -> None:
    priced = _Priced(price=data.draw(any_money))
    assert _Priced.model_validate_json(priced.model_dump_json()) == priced
