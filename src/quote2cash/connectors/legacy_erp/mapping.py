"""Legacy ERP shapes <-> canonical: customer records, items, order lines, drop-file rows,
document balances and ledger entries, and which engine error each SOAP fault code is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from quote2cash.canonical import (
    Address,
    Customer,
    Invoice,
    InvoiceStatus,
    Money,
    Order,
    Product,
)
from quote2cash.connectors.roles import InvoiceStatusReport, LedgerEntry, LedgerKind, PostedInvoice
from quote2cash.engine.errors import (
    ApprovalRequiredError,
    ConflictError,
    DataError,
    IntegrationError,
    MappingError,
    TransientError,
)

SYSTEM: Final = "erp"

_FAULTS: Final[dict[str, type[IntegrationError]]] = {
    "Client.Validation": DataError,
    "Client.TaxRegistrationRequired": DataError,
    "Client.UnknownDocument": DataError,
    "Client.CurrencyMismatch": DataError,
    "Client.TaxMismatch": DataError,
    "Client.TotalMismatch": DataError,
    "Client.UnknownCustomer": MappingError,
    "Client.UnknownItem": MappingError,
    "Client.UnknownEntity": MappingError,
    "Client.CreditLimitExceeded": ApprovalRequiredError,
    "Client.AlreadyPaid": ConflictError,
    "Client.Overpayment": ConflictError,
    "Client.Overcredit": ConflictError,
    "Client.Overapplication": ConflictError,
    "Client.InsufficientCredit": TransientError,
    "Client.ReversalExceedsReceived": TransientError,
}
"""The ERP's fault codes -> the engine's errors; ``Server.*`` and unknown ones are transient
or data errors (see ``fault_error``)."""


def fault_error(label: str, code: str, message: str) -> IntegrationError:
    """The engine's error for a refusal of the ERP, naming the hub's record and the ERP's code."""
    kind = _FAULTS.get(code)
    if kind is None:
        kind = TransientError if code.startswith("Server") else DataError
    return kind(f"{label}: the legacy ERP refused it ({code}): {message}", system=SYSTEM)


def customer_record(customer: Customer, *, reference: str, entity: str) -> dict[str, Any]:
    """A ``CustomerIn`` for ``UpsertCustomer``: the first tax id is the VAT registration."""
    address = customer.billing_address or customer.address
    tax = customer.tax_ids[0] if customer.tax_ids else None
    return {
        "reference": reference,
        "entity": entity,
        "name": customer.name,
        "global_id": customer.global_id,
        "email": customer.email,
        "phone": customer.phone,
        "line1": address.line1 if address else None,
        "line2": address.line2 if address else None,
        "city": address.city if address else None,
        "postal_code": address.postal_code if address else None,
        "state": address.state if address else None,
        "country": address.country if address else None,
        "vat_type": tax.type if tax else None,
        "vat": tax.value if tax else None,
    }


def customer_from(row: Mapping[str, Any], currency: str | None = None) -> Customer:
    """A ``GetCustomer`` row; its credit limit is in ``currency`` (its entity's), when known."""
    address = None
    if row.get("line1") and row.get("city") and row.get("country"):
        address = Address(
            line1=row["line1"],
            line2=row.get("line2"),
            city=row["city"],
            postal_code=row.get("postal_code"),
            state=row.get("state"),
            country=row["country"],
        )
    tax_ids = [(row["vat_type"], row["vat"])] if row.get("vat") and row.get("vat_type") else []
    return Customer.model_validate(
        {
            "global_id": row.get("global_id"),
            "external_ids": {"erp": row["number"]},
            "name": row["name"],
            "email": row.get("email"),
            "phone": row.get("phone"),
            "address": address,
            "tax_ids": tax_ids,
            **(
                {"credit_limit": Money(Decimal(str(row["credit_limit"])), currency)}
                if currency and row.get("credit_limit") is not None
                else {}
            ),
        }
    )


def item_from(row: Mapping[str, Any]) -> Product:
    return Product(
        external_ids={"erp": row["code"]}, name=row["name"], sku=row["code"], unit_label=row["unit"]
    )


def order_record(
    order: Order, *, reference: str, entity: str, customer: str, items: Sequence[str]
) -> dict[str, Any]:
    """A ``OrderIn`` for ``CreateSalesOrder``; ``items`` are the lines' ERP item codes."""
    lines = [
        {
            "item": code,
            "quantity": Decimal(line.quantity),
            "unit_price": line.unit_price.amount,
            "amount": line.amount.amount,
        }
        for line, code in zip(order.lines, items, strict=True)
    ]
    return {
        "reference": reference,
        "entity": entity,
        "customer": customer,
        "currency": order.currency,
        "start_date": order.start_date.isoformat() if order.start_date else None,
        "end_date": order.end_date.isoformat() if order.end_date else None,
        "lines": {"OrderLine": lines},
    }


def invoice_rows(
    invoice: Invoice, *, entity: str, customer: str, items: Sequence[str | None]
) -> list[dict[str, str]]:
    """One drop-file row per line (``items``: its ERP item code, if it names a product);
    ``taxed`` when billing charged tax on the invoice."""
    taxed = "N" if invoice.tax.is_zero() else "Y"
    rows = []
    for line, code in zip(invoice.lines, items, strict=True):
        rows.append(
            {
                "entity": entity,
                "customer": customer,
                "currency": invoice.currency,
                "amount": str(invoice.total.amount),
                "taxed": taxed,
                "item": code or "",
                "description": line.description or "",
                "quantity": str(line.quantity if line.quantity is not None else 1),
                "unit_amount": str(
                    line.unit_amount if line.unit_amount is not None else line.amount.amount
                ),
                "line_amount": str(line.amount.amount),
                "line_tax": "" if line.tax is None else str(line.tax.amount),
            }
        )
    return rows


def money_row(
    invoice: str, amount: Money, payment_ref: str = "", tax: Money | None = None
) -> dict[str, str]:
    """A one-row document of ``amount`` (``tax``: the part of a credit that reverses tax)."""
    return {
        "invoice": invoice,
        "currency": amount.currency,
        "amount": str(amount.amount),
        "line_tax": "" if tax is None else str(tax.amount),
        "payment_ref": payment_ref,
    }


def _money(row: Mapping[str, Any], name: str) -> Money:
    return Money(Decimal(row[name]), str(row["currency"]))


def status_report(row: Mapping[str, Any]) -> InvoiceStatusReport:
    return InvoiceStatusReport(
        status=InvoiceStatus.PAID if row["status"] == "paid" else InvoiceStatus.OPEN,
        total=_money(row, "total"),
        amount_paid=_money(row, "paid"),
        amount_due=_money(row, "due"),
    )


def posted(row: Mapping[str, Any]) -> PostedInvoice:
    report = status_report(row)
    return PostedInvoice(
        erp_id=str(row["number"]),
        number=str(row["number"]),
        total=report.total,
        status=report.status,
    )


def ledger_customer(row: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        kind=LedgerKind.CUSTOMER,
        system=SYSTEM,
        id=str(row["number"]),
        number=row.get("email"),
        customer=str(row["number"]),
        status="active",
        entity=row.get("entity"),
        links={"hub": str(row["global_id"])} if row.get("global_id") else {},
    )


def ledger_order(row: Mapping[str, Any]) -> LedgerEntry:
    """A booked sales order, keyed by its reference (the contract or amendment number)."""
    return LedgerEntry(
        kind=LedgerKind.CONTRACT,
        system=SYSTEM,
        id=str(row["number"]),
        number=row.get("reference"),
        customer=row.get("customer"),
        contract=row.get("reference"),
        currency=row.get("currency"),
        total=_money(row, "total"),
        status="active",
        entity=row.get("entity"),
        quantity=row.get("quantity"),
        state="booked",
    )


def ledger_invoice(row: Mapping[str, Any]) -> LedgerEntry:
    """An invoice or credit, keyed by its reference (billing's number)."""
    return LedgerEntry(
        kind=LedgerKind.INVOICE,
        system=SYSTEM,
        id=str(row["number"]),
        number=row.get("reference") or None,
        customer=row.get("customer"),
        currency=row.get("currency"),
        total=_money(row, "total"),
        tax=_money(row, "tax"),
        balance=_money(row, "due"),
        refunded=_money(row, "refunded"),
        status="paid" if row["status"] == "paid" else "open",
        entity=row.get("entity"),
        links={"erp_number": str(row["number"])},
        state=f"{row['status']} {row.get('kind') or ''}".strip(),
    )


def ledger_payment(row: Mapping[str, Any]) -> LedgerEntry:
    """A payment as received, with what was reversed of its billing payment since."""
    links = {"invoice": str(row["invoice"])} if row.get("invoice") else {}
    if row.get("payment_ref"):
        links["billing"] = str(row["payment_ref"])
    total, refunded = _money(row, "amount"), _money(row, "refunded")
    return LedgerEntry(
        kind=LedgerKind.PAYMENT,
        system=SYSTEM,
        id=str(row["number"]),
        number=row.get("reference") or None,
        customer=row.get("customer"),
        currency=row.get("currency"),
        total=total,
        refunded=refunded,
        status="refunded" if refunded.is_positive() and refunded >= total else "succeeded",
        links=links,
        state="received",
    )
