"""ISO 4217 currencies and their minor units: the one table every amount is quantised against.

Codes are strict: three uppercase letters of a currency in the table. Systems that speak
lowercase (Stripe) convert at the edge with ``code.upper()``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

_ZERO_DECIMAL = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMAL = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMAL = "CLF UYW"
_TWO_DECIMAL = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)
# Withdrawn from ISO 4217 but still seen on the wire (Stripe lists STD; old records the rest).
_WITHDRAWN_TWO_DECIMAL = "CUC HRK SLL STD"

MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_TWO_DECIMAL.split(), 2),
    **dict.fromkeys(_WITHDRAWN_TWO_DECIMAL.split(), 2),
    **dict.fromkeys(_ZERO_DECIMAL.split(), 0),
    **dict.fromkeys(_THREE_DECIMAL.split(), 3),
    **dict.fromkeys(_FOUR_DECIMAL.split(), 4),
}
"""Digits after the decimal point for each known currency (ISO 4217 "minor unit")."""

STRIPE_EXPONENTS: dict[str, int] = {**MINOR_UNITS, "ISK": 2, "MGA": 0}
"""Digits implied by Stripe's integer amounts; differs from ISO for ISK (2) and MGA (0)."""


class UnknownCurrencyError(ValueError):
    """A currency code that is not three uppercase letters of a currency in the table."""


def validate_currency_code(code: object) -> str:
    """Return ``code`` if it is a known uppercase ISO 4217 code, else say what was expected."""
    if isinstance(code, str) and code in MINOR_UNITS:
        return code
    if isinstance(code, str) and code.upper() in MINOR_UNITS:
        raise UnknownCurrencyError(
            f"currency must be an uppercase ISO 4217 code: got {code!r}, expected {code.upper()!r}"
        )
    raise UnknownCurrencyError(
        f"currency must be a known ISO 4217 code (3 uppercase letters, e.g. 'USD'), got {code!r}"
    )


def minor_unit(code: str) -> int:
    """Number of decimal places of ``code`` (2 for USD, 0 for JPY, 3 for KWD)."""
    return MINOR_UNITS[validate_currency_code(code)]


CurrencyCode = Annotated[str, AfterValidator(validate_currency_code)]
"""A pydantic field type for a known uppercase ISO 4217 code."""
