"""Tax on a sale: the TaxRate a line is taxed at and how the tax is treated (standard, reverse
charge, exempt). Rates are exclusive (added on top of the net amount) unless ``inclusive``."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, Field

from quote2cash.canonical.base import Record, _refuse_float

TaxPercentage = Annotated[
    Decimal,
    BeforeValidator(_refuse_float),
    Field(ge=0, le=100, allow_inf_nan=False, decimal_places=4),
]
"""A tax rate in percent: 0 to 100, at most 4 decimal places (19 = 19 %)."""

TaxCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,39}$")]
"""The group's own name for a tax rate (``DE-VAT-19``), the same in every system."""


class TaxTreatment(StrEnum):
    """Why a rate applies: ``standard`` charges it; ``reverse_charge`` (0 %, the buyer accounts for
    the VAT) and ``exempt`` charge nothing but are still reported."""

    STANDARD = "standard"
    REVERSE_CHARGE = "reverse_charge"
    EXEMPT = "exempt"


class TaxRate(Record):
    """One tax rate as the group defines it; billing and ERP each hold their own copy of it."""

    label_fields = ("code",)

    code: TaxCode
    display_name: Annotated[str, Field(min_length=1, max_length=50)]
    percentage: TaxPercentage
    inclusive: bool = False
    treatment: TaxTreatment = TaxTreatment.STANDARD
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    jurisdiction: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    tax_type: Annotated[str, Field(pattern=r"^[a-z_]{2,40}$")] = "vat"
    note: Annotated[str, Field(min_length=1, max_length=500)] | None = None
