"""Money: a Decimal amount in an ISO 4217 currency, always quantised to the currency's minor unit.

Parsing is strict: ``Money("19.999", "USD")`` is an error, never a silent rounding, because an
amount that does not fit the currency means the data is wrong upstream. Rounding happens only
where asked for (``Money.quantize``, ``Money.of(..., rounding=...)``, multiplication), and uses
ROUND_HALF_UP ("commercial rounding", what accountants and invoices expect) unless told otherwise.
Floats are refused everywhere: they cannot hold most decimal amounts exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation, Overflow
from fractions import Fraction
from math import floor
from typing import Any, NoReturn

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from quote2cash.canonical.currency import MINOR_UNITS, STRIPE_EXPONENTS, validate_currency_code

DEFAULT_ROUNDING = ROUND_HALF_UP
"""Rounding used when a result must be quantised and no rounding is named."""

_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
_EXACT = Context(prec=60, traps=[InvalidOperation, Overflow, Inexact])
"""For sums, products and scaling: beyond 60 digits it raises instead of rounding silently."""
_QUANTUM: dict[str, Decimal] = {code: Decimal(1).scaleb(-e) for code, e in MINOR_UNITS.items()}


class MoneyError(ValueError):
    """An amount that cannot be money as given (float, not a number, too precise, bad currency)."""


class CurrencyMismatchError(MoneyError):
    """Arithmetic or comparison between amounts of two different currencies."""


Amount = Decimal | int | str
"""What a money amount may be given as: never float."""


def to_decimal(value: object, *, what: str = "amount") -> Decimal:
    """Exact Decimal from a Decimal, an int or a decimal string; floats are refused."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise MoneyError(f"{what} must be a decimal string or Decimal, not bool")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"{what} must be a decimal string, got {value!r}") from None
    elif isinstance(value, float):
        raise MoneyError(f"{what} must be a decimal string or Decimal, not float (got {value!r})")
    else:
        raise MoneyError(
            f"{what} must be a decimal string or Decimal, not {type(value).__name__} ({value!r})"
        )
    if not result.is_finite():
        raise MoneyError(f"{what} must be a finite number, got {value!r}")
    return result


def exact_product(left: Decimal, right: Decimal) -> Decimal:
    """``left * right`` without the default context's 28-digit rounding."""
    return _EXACT.multiply(left, right)


def _check_currencies(left: Money, right: Money, operation: str) -> NoReturn:
    raise CurrencyMismatchError(
        f"cannot {operation} {left} and {right}: currencies differ ({left.currency} != "
        f"{right.currency})"
    )


class Money:
    """An immutable amount of one currency, exact to the currency's minor unit.

    Guarantees: ``amount`` has exactly the currency's number of decimal places; two Money are
    equal when currency and amount are; arithmetic never mixes currencies or loses a minor unit.
    """

    __slots__ = ("amount", "currency")
    amount: Decimal
    currency: str

    def __init__(self, amount: Amount, currency: str) -> None:
        """Strict: raises if ``amount`` has more decimal places than ``currency`` allows."""
        code = _currency(currency)
        value = to_decimal(amount)
        quantised = _quantise(value, code, DEFAULT_ROUNDING)
        if quantised != value:
            raise MoneyError(
                f"amount {value} has more decimal places than {code} allows "
                f"({MINOR_UNITS[code]}); round explicitly with Money.quantize"
            )
        _set(self, quantised, code)

    @classmethod
    def _make(cls, amount: Decimal, currency: str) -> Money:
        money = object.__new__(cls)
        _set(money, amount, currency)
        return money

    @classmethod
    def quantize(cls, amount: Amount, currency: str, *, rounding: str = DEFAULT_ROUNDING) -> Money:
        """Money from an amount of any precision, rounded to the minor unit (ROUND_HALF_UP)."""
        code = _currency(currency)
        return cls._make(_quantise(to_decimal(amount), code, rounding), code)

    @classmethod
    def of(cls, amount: Amount, currency: str, *, rounding: str | None = None) -> Money:
        """Strict like ``Money(...)`` unless a ``rounding`` mode (e.g. ROUND_HALF_UP) is named."""
        if rounding is None:
            return cls(amount, currency)
        return cls.quantize(amount, currency, rounding=rounding)

    @classmethod
    def zero(cls, currency: str) -> Money:
        code = _currency(currency)
        return cls._make(_QUANTUM[code] * 0, code)

    @classmethod
    def sum(cls, amounts: Iterable[Money], currency: str) -> Money:
        """Total of ``amounts`` (zero if empty); every amount must be in ``currency``."""
        total = cls.zero(currency)
        for money in amounts:
            total = total + money
        return total

    @classmethod
    def from_minor(cls, units: int, currency: str) -> Money:
        """Money from an integer count of ISO minor units: ``from_minor(1999, "USD")`` is 19.99."""
        code = _currency(currency)
        if isinstance(units, bool) or not isinstance(units, int):
            raise MoneyError(f"minor units must be an int, got {type(units).__name__} {units!r}")
        try:
            return cls._make(Decimal(units).scaleb(-MINOR_UNITS[code], _EXACT), code)
        except Inexact:
            raise MoneyError(f"{units} minor units is too large for {code}") from None

    @property
    def minor_units(self) -> int:
        """The amount as an integer count of ISO minor units (cents for USD, yen for JPY)."""
        return int(self.amount.scaleb(MINOR_UNITS[self.currency], _EXACT))

    @classmethod
    def from_stripe_amount(cls, units: int, currency: str) -> Money:
        """Money from Stripe's integer ``amount`` (its exponent differs from ISO for ISK and MGA).

        Accepts Stripe's lowercase currency codes.
        """
        code = currency.upper() if isinstance(currency, str) else currency
        code = _currency(code)
        if isinstance(units, bool) or not isinstance(units, int):
            raise MoneyError(f"Stripe amount must be an int, got {type(units).__name__} {units!r}")
        return cls(Decimal(units).scaleb(-STRIPE_EXPONENTS[code], _EXACT), code)

    @property
    def stripe_amount(self) -> int:
        """The integer Stripe expects; raises if Stripe cannot express it (fractional MGA)."""
        scaled = self.amount.scaleb(STRIPE_EXPONENTS[self.currency], _EXACT)
        if scaled != scaled.to_integral_value():
            raise MoneyError(
                f"{self} cannot be sent to Stripe: it takes whole {self.currency} only"
            )
        return int(scaled)

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            _check_currencies(self, other, "add")
        return Money._make(_EXACT.add(self.amount, other.amount), self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            _check_currencies(self, other, "subtract")
        return Money._make(_EXACT.subtract(self.amount, other.amount), self.currency)

    def __neg__(self) -> Money:
        return Money._make(_CONTEXT.minus(self.amount), self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money._make(_CONTEXT.abs(self.amount), self.currency)

    def multiply(self, factor: Decimal | int | str, *, rounding: str = DEFAULT_ROUNDING) -> Money:
        """Amount times ``factor`` (a quantity or rate), rounded to the minor unit."""
        exact = exact_product(self.amount, to_decimal(factor, what="factor"))
        return Money._make(_quantise(exact, self.currency, rounding), self.currency)

    def __mul__(self, factor: object) -> Money:
        if isinstance(factor, float):
            raise MoneyError(f"cannot multiply {self} by float {factor!r}; use Decimal or int")
        if isinstance(factor, bool) or not isinstance(factor, Decimal | int):
            return NotImplemented
        return self.multiply(factor)

    __rmul__ = __mul__

    def allocate(self, ratios: Sequence[Decimal | int | str]) -> list[Money]:
        """Split into parts proportional to ``ratios`` that add up exactly to this amount.

        Largest-remainder method: each part gets its exact share rounded down to the minor unit,
        and the leftover units go one each to the parts with the largest fractions (earliest first
        on ties). A zero ratio always gets zero. The sign of every part follows the total.
        """
        if not ratios:
            raise MoneyError("allocate needs at least one ratio")
        weights = [Fraction(to_decimal(r, what="ratio")) for r in ratios]
        if any(w < 0 for w in weights):
            raise MoneyError(f"allocation ratios must not be negative, got {list(ratios)!r}")
        weight_total = sum(weights, Fraction(0))
        if weight_total == 0:
            raise MoneyError(f"allocation ratios must not all be zero, got {list(ratios)!r}")
        units = self.minor_units
        sign = -1 if units < 0 else 1
        exact = [abs(units) * w / weight_total for w in weights]
        parts = [floor(share) for share in exact]
        leftover = abs(units) - sum(parts)
        by_fraction = sorted(range(len(exact)), key=lambda i: (parts[i] - exact[i], i))
        for index in by_fraction[:leftover]:
            parts[index] += 1
        return [Money.from_minor(sign * part, self.currency) for part in parts]

    def split(self, count: int) -> list[Money]:
        """``count`` near-equal parts that add up exactly (earlier parts get the extra units)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise MoneyError(f"split count must be a positive int, got {count!r}")
        return self.allocate([1] * count)

    def is_zero(self) -> bool:
        return self.amount.is_zero()

    def is_positive(self) -> bool:
        return self.amount > 0

    def is_negative(self) -> bool:
        return self.amount < 0

    def _comparable(self, other: object, operation: str) -> Money | None:
        if not isinstance(other, Money):
            return None
        if other.currency != self.currency:
            _check_currencies(self, other, operation)
        return other

    def __lt__(self, other: object) -> bool:
        that = self._comparable(other, "compare")
        return NotImplemented if that is None else self.amount < that.amount

    def __le__(self, other: object) -> bool:
        that = self._comparable(other, "compare")
        return NotImplemented if that is None else self.amount <= that.amount

    def __gt__(self, other: object) -> bool:
        that = self._comparable(other, "compare")
        return NotImplemented if that is None else self.amount > that.amount

    def __ge__(self, other: object) -> bool:
        that = self._comparable(other, "compare")
        return NotImplemented if that is None else self.amount >= that.amount

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.currency == other.currency and self.amount == other.amount

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Money is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Money is immutable")

    def __reduce__(self) -> tuple[type[Money], tuple[str, str]]:
        return (Money, (format(self.amount, "f"), self.currency))

    def __repr__(self) -> str:
        return f"Money('{self.amount:f}', '{self.currency}')"

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency}"

    def to_json_dict(self) -> dict[str, str]:
        """The wire shape: ``{"amount": "19.99", "currency": "USD"}`` (amount always a string)."""
        return {"amount": format(self.amount, "f"), "currency": self.currency}

    @classmethod
    def _coerce(cls, value: Any) -> Money:
        if isinstance(value, Money):
            return value
        if isinstance(value, Mapping):
            keys = set(value)
            if keys != {"amount", "currency"}:
                raise MoneyError(
                    "money must have exactly the keys 'amount' and 'currency', "
                    f"got {sorted(map(str, keys))}"
                )
            return cls(value["amount"], value["currency"])
        raise MoneyError(
            "money must be Money or {'amount': '<decimal string>', 'currency': '<ISO 4217>'}, "
            f"got {type(value).__name__}"
        )

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialise, info_arg=True
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "object",
            "title": "Money",
            "properties": {
                "amount": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
            "required": ["amount", "currency"],
            "additionalProperties": False,
        }


def _serialise(money: Money, info: core_schema.SerializationInfo) -> dict[str, Any]:
    if info.mode_is_json():
        return money.to_json_dict()
    return {"amount": money.amount, "currency": money.currency}


def _currency(code: object) -> str:
    try:
        return validate_currency_code(code)
    except ValueError as exc:
        raise MoneyError(str(exc)) from None


def _quantise(value: Decimal, currency: str, rounding: str) -> Decimal:
    try:
        result = value.quantize(_QUANTUM[currency], rounding=rounding, context=_CONTEXT)
    except InvalidOperation:
        raise MoneyError(f"amount {value} is too large for {currency}") from None
    return result.copy_abs() if result.is_zero() else result


def _set(money: Money, amount: Decimal, currency: str) -> None:
    object.__setattr__(money, "amount", amount)
    object.__setattr__(money, "currency", currency)
