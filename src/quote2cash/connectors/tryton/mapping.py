"""Tryton records <-> the canonical model: pure functions, no I/O, testable without a server.

The hub marks the parties it creates with two party identifiers of no type (Tryton allows
``type = None``): ``q2c-gid:<global id>`` and ``q2c-key:<idempotency key>``; both are searchable
and survive edits in Tryton's UI. Quantities travel to Tryton as floats (its field type) only when
they are whole numbers, so nothing is lost; money always travels as ``Decimal``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from quote2cash.canonical import (
    Address,
    Customer,
    InvoiceLine,
    InvoiceStatus,
    Money,
    OrderLine,
    Product,
    TaxIdValue,
    TaxRate,
)
from quote2cash.canonical.money import exact_product
from quote2cash.connectors.item_codes import ITEM_CODE_KEYS, item_codes
from quote2cash.connectors.roles import LedgerEntry, LedgerKind

__all__ = [
    "GLOBAL_ID_MARK",
    "IDEMPOTENCY_MARK",
    "ITEM_CODE_KEYS",
    "PAYMENT_MARK",
    "PRICE_DIGITS",
    "REFUND_MARK",
    "LineAmount",
    "RefundMarker",
    "TaxPosting",
    "address_from_tryton",
    "address_values",
    "credit_marker",
    "customer_from_party",
    "global_id_marker",
    "idempotency_marker",
    "invoice_line_amount",
    "invoice_status",
    "item_codes",
    "order_line_amount",
    "payment_marker",
    "product_from_tryton",
    "record_id",
    "refund_marker",
    "refund_marker_prefix",
    "refund_marker_read",
    "tax_postings",
]

GLOBAL_ID_MARK: Final = "q2c-gid:"
IDEMPOTENCY_MARK: Final = "q2c-key:"
PAYMENT_MARK: Final = "q2c-payment:"
REFUND_MARK: Final = "q2c-refund:"
CREDIT_MARK: Final = "q2c-credit:"
PRICE_DIGITS: Final = 4
"""Tryton's default unit price precision (``account_invoice``/``sale`` ``price_decimal``)."""

_STATUS: Final = {
    "draft": InvoiceStatus.DRAFT,
    "validated": InvoiceStatus.DRAFT,
    "posted": InvoiceStatus.OPEN,
    "paid": InvoiceStatus.PAID,
    "cancelled": InvoiceStatus.VOID,
}


def global_id_marker(global_id: str) -> str:
    return f"{GLOBAL_ID_MARK}{global_id}"


def idempotency_marker(key: str) -> str:
    return f"{IDEMPOTENCY_MARK}{key}"


def payment_marker(key: str) -> str:
    """What a payment move's description carries so a retry with the same key finds it."""
    return f"{PAYMENT_MARK}{key}"


def credit_marker(key: str) -> str:
    """What a credit application move's description carries so a retry with the same key
    finds it."""
    return f"{CREDIT_MARK}{key}"


@dataclass(frozen=True)
class RefundMarker:
    """What a payment reversal move's description says: the cumulative refunded amount it brings
    the billing payment's reversals up to, and the receivable lines it takes off the invoice."""

    target: Money
    picked: tuple[int, ...]


_REFUND_TAIL: Final = re.compile(r"(\d+(?:\.\d+)?) ([A-Z]{3}) picks (\d+(?:,\d+)*)")


def refund_marker_prefix(billing_payment_id: str) -> str:
    """How every reversal move of one billing payment's refunds starts its description."""
    return f"{REFUND_MARK}{billing_payment_id} to "


def refund_marker(billing_payment_id: str, target: Money, picked: Sequence[int]) -> str:
    """``q2c-refund:<billing payment id> to <cumulative refunded> <currency> picks <line ids>``:
    found again by the billing payment id whatever the key, and naming the lines it reverses so
    a retry after a crash can finish the move's work instead of booking another."""
    lines = ",".join(str(i) for i in picked)
    return (
        f"{refund_marker_prefix(billing_payment_id)}{target.amount} {target.currency} picks {lines}"
    )


def refund_marker_read(description: str, billing_payment_id: str) -> RefundMarker | None:
    """The marker of a reversal move of ``billing_payment_id``; None for any other description."""
    prefix = refund_marker_prefix(billing_payment_id)
    if not description.startswith(prefix):
        return None
    found = _REFUND_TAIL.fullmatch(description.removeprefix(prefix))
    if found is None:
        return None
    amount, currency, lines = found.groups()
    try:
        target = Money(amount, currency)
    except ValueError:
        return None
    return RefundMarker(target=target, picked=tuple(int(i) for i in lines.split(",")))


def record_id(value: str) -> int | None:
    """A Tryton id from the hub's string form; None when it cannot be one (not a positive int)."""
    text = value.strip()
    if not text.isdigit():
        return None
    number = int(text)
    return number if number > 0 else None


def invoice_status(state: str) -> InvoiceStatus:
    """draft/validated -> draft, posted -> open, paid -> paid, cancelled -> void."""
    try:
        return _STATUS[state]
    except KeyError:
        raise ValueError(f"unknown Tryton invoice state {state!r}") from None


# --- addresses and customers ----------------------------------------------------------------


def address_values(address: Address, country_id: int) -> dict[str, Any]:
    """A ``party.address`` create/write dict; the state is kept in the street block."""
    street = [address.line1]
    if address.line2:
        street.append(address.line2)
    values: dict[str, Any] = {
        "street_unstructured": "\n".join(street),
        "city": address.city,
        "postal_code": address.postal_code or "",
        "country": country_id,
    }
    if address.state:
        values["street_unstructured"] += f"\n{address.state}"
    return values


def address_from_tryton(row: Mapping[str, Any], country_code: str | None) -> Address | None:
    """The Address of a ``party.address`` row; None if it lacks a street, city or country."""
    street = [s for s in str(row.get("street_unstructured") or "").split("\n") if s.strip()]
    city = row.get("city")
    if not street or not city or not country_code:
        return None
    return Address(
        line1=street[0],
        line2=", ".join(street[1:]) or None,
        city=str(city),
        postal_code=str(row["postal_code"]) if row.get("postal_code") else None,
        country=country_code,
    )


def customer_from_party(
    party: Mapping[str, Any],
    *,
    addresses: Sequence[Address],
    identifiers: Iterable[tuple[str | None, str]],
    email: str | None,
) -> Customer:
    """The canonical Customer of a party: ``external_ids`` hold the party id (``erp``) and its
    code, the customer's ERP number (``erp_number``); the hub's global id comes from its marker."""
    global_id: str | None = None
    tax_ids: list[TaxIdValue] = []
    for kind, code in identifiers:
        if kind is None:
            if code.startswith(GLOBAL_ID_MARK):
                global_id = code.removeprefix(GLOBAL_ID_MARK)
            continue
        tax_ids.append(TaxIdValue(type=kind, value=code))
    external_ids = {"erp": str(party["id"])}
    if party.get("code"):
        external_ids["erp_number"] = str(party["code"])
    return Customer(
        global_id=global_id,
        external_ids=external_ids,
        name=str(party["name"]),
        email=email,
        address=addresses[0] if addresses else None,
        billing_address=None,
        tax_ids=tuple(tax_ids),
    )


# --- items ----------------------------------------------------------------------------------


def product_from_tryton(row: Mapping[str, Any]) -> Product:
    """An item of the master: ``sku`` is the product code, ``external_ids['erp']`` its id."""
    template = row.get("template.") or {}
    uom = row.get("default_uom.") or {}
    name = row.get("name") or template.get("name") or row.get("rec_name") or row.get("code")
    description = row.get("description") or None
    return Product(
        external_ids={"erp": str(row["id"])},
        name=str(name),
        sku=str(row["code"]) if row.get("code") else None,
        description=str(description) if description else None,
        unit_label=str(uom["name"]) if uom.get("name") else None,
        active=bool(row.get("active", True)),
    )


# A Tryton product is matched by one of ``item_codes(ref)`` as its code, else as its id.


# --- amounts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineAmount:
    """What a Tryton line is given so that ``quantity * unit_price`` is the canonical amount."""

    quantity: float
    unit_price: Decimal


def _fits_price(value: Decimal) -> bool:
    exponent = value.normalize().as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -PRICE_DIGITS


def _exact_pair(quantity: Decimal | int | None, unit: Decimal | None, amount: Money) -> bool:
    if quantity is None or unit is None:
        return False
    qty = Decimal(quantity)
    if qty != qty.to_integral_value() or qty == 0 or not _fits_price(unit):
        return False
    return exact_product(qty, unit) == amount.amount


def invoice_line_amount(line: InvoiceLine) -> LineAmount:
    """Quantity and unit price for a Tryton invoice line whose amount equals ``line.amount``.

    The line's own quantity and unit amount are used when they multiply exactly to the amount
    (whole quantity, unit price within Tryton's 4 decimals); otherwise one unit at the amount, so
    Tryton never rounds differently from billing. Negative amounts (proration credits) stay
    negative on the unit price.
    """
    if _exact_pair(line.quantity, line.unit_amount, line.amount):
        assert line.quantity is not None and line.unit_amount is not None
        return LineAmount(float(line.quantity), line.unit_amount)
    return LineAmount(1.0, line.amount.amount)


def order_line_amount(line: OrderLine) -> LineAmount:
    """Quantity and unit price of a sale line; a discount is folded into the unit price when it
    divides exactly, else the line becomes one unit at its amount."""
    if line.discount is None and _exact_pair(line.quantity, line.unit_price.amount, line.amount):
        return LineAmount(float(line.quantity), line.unit_price.amount)
    if line.quantity:
        unit = line.amount.amount / Decimal(line.quantity)
        if _exact_pair(line.quantity, unit, line.amount):
            return LineAmount(float(line.quantity), unit.normalize())
    return LineAmount(1.0, line.amount.amount)


# --- taxes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaxPosting:
    """One tax line of an ERP document: billing's tax of one rate over the lines taxed at it.

    ``code`` None means billing named no rate: the legal entity's sales tax takes it."""

    code: str | None
    base: Decimal
    amount: Decimal
    line_bases: tuple[Decimal, ...] = ()
    pieces: int = 0
    """Billing lines behind the bases, each rounded on its own (a netted credit line is many)."""

    def per_line(self, rate: Decimal, currency: str) -> Decimal:
        """The tax at ``rate`` (0.19) rounded per line half up, as billing rounds it."""
        return sum(
            (Money.quantize(base * rate, currency).amount for base in self.line_bases), Decimal(0)
        )

    def plausible(self, rate: Decimal) -> bool:
        """Within half a minor unit per line of ``rate`` x base: billing's rounding, no more."""
        slack = Decimal("0.005") * max(self.pieces, len(self.line_bases), 1)
        return abs(self.amount - self.base * rate) <= slack


def tax_postings(
    lines: Sequence[tuple[Money, Money | None, TaxRate | None]],
    tax: Money,
    *,
    pieces: Sequence[int] | None = None,
) -> list[TaxPosting]:
    """Billing's tax grouped by rate (first-seen order); together they come to ``tax`` exactly.

    ``lines`` are (net amount, the line's tax or None, its rate or None). Tax billing did not
    assign to a rate goes to a ``None`` posting over the lines without a rate. ``pieces`` says
    how many billing lines each line nets (1 each by default).
    """
    amounts: dict[str | None, Decimal] = {}
    bases: dict[str | None, list[Decimal]] = {}
    counts: dict[str | None, int] = {}
    unrated: list[Decimal] = []
    unrated_pieces = 0
    for (amount, line_tax, rate), count in zip(lines, pieces or [1] * len(lines), strict=True):
        if rate is None:
            unrated.append(amount.amount)
            unrated_pieces += count
            continue
        bases.setdefault(rate.code, []).append(amount.amount)
        counts[rate.code] = counts.get(rate.code, 0) + count
        amounts[rate.code] = amounts.get(rate.code, Decimal(0)) + (
            line_tax.amount if line_tax is not None else Decimal(0)
        )
    remainder = tax.amount - sum(amounts.values(), Decimal(0))
    if remainder:
        amounts[None] = remainder
        bases[None] = unrated or [b for group in bases.values() for b in group]
        counts[None] = unrated_pieces or sum(counts.values())
    return [
        TaxPosting(code, sum(bases[code], Decimal(0)), amount, tuple(bases[code]), counts[code])
        for code, amount in amounts.items()
    ]


# --- reconciliation ledger -------------------------------------------------------------------

LEDGER_INVOICE_FIELDS: Final = (
    "state",
    "number",
    "reference",
    "party",
    "company",
    "currency.code",
    "tax_amount",
    "total_amount",
    "amount_to_pay",
)
LEDGER_SALE_FIELDS: Final = ("state", "reference", "party", "company", "currency.code")
_LEDGER_SALE_STATUS: Final = {
    "confirmed": "active",
    "processing": "active",
    "done": "active",
    "cancelled": "canceled",
}


def ledger_invoice(row: Mapping[str, Any], entity: str | None) -> LedgerEntry:
    """A posted customer invoice or credit note, keyed by its reference (billing's number)."""
    currency = str(row["currency."]["code"])
    owed = Decimal(0) if row["state"] == "paid" else Decimal(row["amount_to_pay"])
    return LedgerEntry(
        kind=LedgerKind.INVOICE,
        system="erp",
        id=str(row["id"]),
        number=str(row.get("reference") or "") or None,
        customer=str(row["party"]),
        currency=currency,
        total=Money(Decimal(row["total_amount"]), currency),
        tax=Money(Decimal(row["tax_amount"]), currency),
        balance=Money(owed, currency),
        status="paid" if owed == 0 else "open",
        entity=entity,
        links={"erp_number": str(row["number"])} if row.get("number") else {},
        state=str(row["state"]),
    )


def ledger_sale(row: Mapping[str, Any], entity: str | None) -> LedgerEntry:
    """A booked sale, keyed by its reference (the contract or amendment number)."""
    return LedgerEntry(
        kind=LedgerKind.CONTRACT,
        system="erp",
        id=str(row["id"]),
        number=str(row.get("reference") or "") or None,
        customer=str(row["party"]),
        contract=str(row.get("reference") or "") or None,
        currency=str(row["currency."]["code"]),
        status=_LEDGER_SALE_STATUS.get(str(row["state"]), "pending"),
        entity=entity,
        state=str(row["state"]),
    )


def ledger_party(row: Mapping[str, Any]) -> LedgerEntry:
    """A hub-onboarded party, found by its global-id identifier."""
    return LedgerEntry(
        kind=LedgerKind.CUSTOMER,
        system="erp",
        id=str(row["party"]),
        customer=str(row["party"]),
        status="active",
        links={"hub": str(row["code"]).removeprefix(GLOBAL_ID_MARK)},
    )
