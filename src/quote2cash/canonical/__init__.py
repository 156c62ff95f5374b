"""The hub's canonical model: every system's records are mapped to and from these.

Money is ``Money`` (Decimal + ISO 4217, exact to the minor unit), instants are aware UTC,
dates are ``date``; records are frozen pydantic models with ``global_id`` and ``external_ids``.
"""

from quote2cash.canonical.base import (
    CanonicalModel,
    DiscountPercent,
    Identifier,
    Record,
    RecordValidationError,
    Ref,
    SeatQuantity,
    SignedDecimal,
    UnitAmount,
    UsageQuantity,
    validate_record,
)
from quote2cash.canonical.catalog import Interval, PricePlan, Product, UsageType
from quote2cash.canonical.credit_memo import (
    CreditMemo,
    CreditMemoLine,
    CreditMemoStatus,
    CreditReason,
)
from quote2cash.canonical.currency import (
    MINOR_UNITS,
    STRIPE_EXPONENTS,
    CurrencyCode,
    UnknownCurrencyError,
    minor_unit,
    validate_currency_code,
)
from quote2cash.canonical.invoice import Invoice, InvoiceLine, InvoiceStatus
from quote2cash.canonical.money import (
    DEFAULT_ROUNDING,
    CurrencyMismatchError,
    Money,
    MoneyError,
    to_decimal,
)
from quote2cash.canonical.order import Order, OrderLine, OrderStatus
from quote2cash.canonical.party import (
    Address,
    CountryCode,
    Customer,
    LegalEntity,
    TaxExemption,
    TaxId,
    TaxIdValue,
)
from quote2cash.canonical.payment import Payment, PaymentStatus
from quote2cash.canonical.subscription import (
    Amendment,
    ProrationBehavior,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from quote2cash.canonical.tax import TaxPercentage, TaxRate, TaxTreatment
from quote2cash.canonical.time import NaiveDatetimeError, UtcDateTime, ensure_utc, utc_now
from quote2cash.canonical.usage import UsageRecord

__all__ = [
    "DEFAULT_ROUNDING",
    "MINOR_UNITS",
    "STRIPE_EXPONENTS",
    "Address",
    "Amendment",
    "CanonicalModel",
    "CountryCode",
    "CreditMemo",
    "CreditMemoLine",
    "CreditMemoStatus",
    "CreditReason",
    "CurrencyCode",
    "CurrencyMismatchError",
    "Customer",
    "DiscountPercent",
    "Identifier",
    "Interval",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "LegalEntity",
    "Money",
    "MoneyError",
    "NaiveDatetimeError",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Payment",
    "PaymentStatus",
    "PricePlan",
    "Product",
    "ProrationBehavior",
    "Record",
    "RecordValidationError",
    "Ref",
    "SeatQuantity",
    "SignedDecimal",
    "Subscription",
    "SubscriptionItem",
    "SubscriptionStatus",
    "TaxExemption",
    "TaxId",
    "TaxIdValue",
    "TaxPercentage",
    "TaxRate",
    "TaxTreatment",
    "UnitAmount",
    "UnknownCurrencyError",
    "UsageQuantity",
    "UsageRecord",
    "UsageType",
    "UtcDateTime",
    "ensure_utc",
    "minor_unit",
    "to_decimal",
    "utc_now",
    "validate_currency_code",
    "validate_record",
]
