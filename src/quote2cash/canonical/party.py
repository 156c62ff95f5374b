"""Who we sell to and who sells: Customer, the selling LegalEntity, their Address and tax ids."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from quote2cash.canonical.base import CanonicalModel, Record, Ref
from quote2cash.canonical.currency import CurrencyCode
from quote2cash.canonical.money import Money

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2, uppercase (``DE``, ``US``, ``GB``)."""

Text = Annotated[str, Field(min_length=1, max_length=500)]


class Address(CanonicalModel):
    line1: Text
    line2: Text | None = None
    city: Text
    postal_code: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    state: Text | None = None
    country: CountryCode

    @field_validator("country", mode="before")
    @classmethod
    def _country_is_upper_alpha2(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 2 and value.isalpha() and not value.isupper():
            raise ValueError(
                f"country must be an uppercase ISO 3166-1 alpha-2 code: got {value!r}, "
                f"expected {value.upper()!r}"
            )
        return value


def _tax_id_from_pair(value: Any) -> Any:
    if isinstance(value, tuple | list) and len(value) == 2:
        return {"type": value[0], "value": value[1]}
    return value


class TaxIdValue(CanonicalModel):
    """A tax identifier as a (type, value) pair, e.g. ``("eu_vat", "DE123456789")``."""

    type: Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[a-z0-9]+)+$")]
    value: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")]

    def as_pair(self) -> tuple[str, str]:
        return (self.type, self.value)


TaxId = Annotated[TaxIdValue, BeforeValidator(_tax_id_from_pair)]
"""Accepts ``TaxIdValue``, ``{"type":..., "value":...}`` or a 2-tuple ``(type, value)``."""


class TaxExemption(StrEnum):
    NONE = "none"
    EXEMPT = "exempt"
    REVERSE_CHARGE = "reverse"


class LegalEntity(Record):
    """A company of the group that contracts, invoices and books revenue in its base currency."""

    name: Text
    country: CountryCode
    base_currency: CurrencyCode
    tax_ids: tuple[TaxId, ...] = ()
    address: Address | None = None


class Customer(Record):
    """The buyer; its financial master data (tax, legal entity) is owned by the ERP."""

    name: Text
    email: Annotated[str, Field(max_length=254)] | None = None
    phone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    address: Address | None = None
    billing_address: Address | None = None
    tax_ids: tuple[TaxId, ...] = ()
    tax_exemption: TaxExemption = TaxExemption.NONE
    currency: CurrencyCode | None = None
    legal_entity: Ref | None = None
    parent: Ref | None = None
    """The parent account in the customer's hierarchy (a group's holding), if any."""
    credit_limit: Money | None = None
    """The credit finance grants the customer (ERP-owned; None: the system holds none)."""

    @field_validator("email")
    @classmethod
    def _email_has_shape(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"email must look like name@domain.tld, got {value!r}")
        return value
