"""Salesforce records <-> canonical model: Opportunity -> Order, Account -> Customer, and so on.

Id convention: ``external_ids["crm"]`` is always the Salesforce record Id (18 characters) of the
record itself: Account for a customer, Opportunity for an order, OpportunityLineItem for a line,
Product2 for a product, the amendment request and Subscription__c for amendments. Product codes
travel as ``Product.sku``; ids other systems wrote back (``ERP_Customer_Number__c``,
``Billing_Customer_Id__c``, ``ERP_Item_Code__c``, ...) become their systems' external ids.
Amounts are Decimals straight from the JSON (never float); a value that does not fit the
canonical model raises ``DataError`` naming the record, the field and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final, TypeVar

from quote2cash.canonical import (
    Address,
    Amendment,
    Customer,
    Money,
    MoneyError,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    ProrationBehavior,
    Record,
    RecordValidationError,
    Ref,
    SubscriptionStatus,
    validate_record,
)
from quote2cash.connectors.roles import (
    AccountFinancials,
    AccountMerge,
    AmendmentOutcome,
    ChangedAccount,
    ContractState,
    CrmStatus,
    CustomerLinks,
    DealActivated,
    DealCanceled,
    DealInvoiceStanding,
    DealSubscribed,
    DuplicateAccount,
    InvoiceStanding,
    InvoiceState,
    LedgerEntry,
    LedgerKind,
)
from quote2cash.engine.errors import DataError

M = TypeVar("M", bound=Record)
SYSTEM: Final = "crm"
CLOSED_WON: Final = "Closed Won"
CLOSED_LOST: Final = "Closed Lost"

ACCOUNT_REF_FIELDS: Final = (
    "Account.Hub_Global_Id__c",
    "Account.ERP_Customer_Number__c",
    "Account.Billing_Customer_Id__c",
)
LINE_FIELDS: Final = (
    "Id",
    "Product2Id",
    "Product2.ProductCode",
    "Product2.Name",
    "Product2.ERP_Item_Code__c",
    "Product2.Billing_Price_Id__c",
    "Quantity",
    "UnitPrice",
    "TotalPrice",
    "Discount",
    "ServiceDate",
    "Description",
)
OPPORTUNITY_FIELDS: Final = (
    "Id",
    "Name",
    "AccountId",
    "StageName",
    "IsWon",
    "IsClosed",
    "CurrencyIsoCode",
    "CloseDate",
    "Contract_Number__c",
    "SystemModstamp",
    *ACCOUNT_REF_FIELDS,
)
BILL_TO_FIELD: Final = "Bill_To_Account__c"
"""The Opportunity lookup naming the account invoiced when it is not the buyer (the package's)."""
PRODUCT_FIELDS: Final = (
    "Id",
    "Name",
    "ProductCode",
    "Description",
    "IsActive",
    "QuantityUnitOfMeasure",
    "ERP_Item_Code__c",
)
AMENDMENT_FIELDS: Final = (
    "Id",
    "Name",
    "Subscription__c",
    "Subscription__r.Billing_Subscription_Id__c",
    "Subscription__r.Quantity__c",
    "Product__c",
    "Product__r.ProductCode",
    "Billing_Subscription_Item_Id__c",
    "Amendment_Number__c",
    "Previous_Quantity__c",
    "New_Quantity__c",
    "Effective_Date__c",
    "Proration__c",
    "Reason__c",
    "Status__c",
    "CreatedDate",
    "SystemModstamp",
)


def opportunity_soql(where: str, bill_to_field: str | None = None) -> str:
    """Opportunities with their account ids and product lines (a child subquery), and the
    bill-to account lookup where the org has one."""
    lines = f"(SELECT {', '.join(LINE_FIELDS)} FROM OpportunityLineItems ORDER BY CreatedDate, Id)"
    fields = [*OPPORTUNITY_FIELDS, *([bill_to_field] if bill_to_field else [])]
    return (
        f"SELECT {', '.join(fields)}, {lines} FROM Opportunity WHERE {where} "
        "ORDER BY SystemModstamp, Id"
    )


def closed_won_callout(message: Mapping[str, Any]) -> tuple[str, str]:
    """The opportunity and contract number a Closed-Won callout (already verified) names; the
    contract number is the opportunity's id when the deal has none."""
    opportunity: Mapping[str, Any] = message.get("opportunity") or {}
    opportunity_id = str(opportunity.get("Id") or "")
    if not opportunity_id:
        raise DataError(
            f"callout {message.get('messageId')}: field 'opportunity.Id' is missing", system=SYSTEM
        )
    return opportunity_id, str(opportunity.get("Contract_Number__c") or opportunity_id)


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal (whole seconds, UTC): filters with it use ``>=`` to lose nothing."""
    if moment.utcoffset() is None:
        raise DataError(f"'since' {moment.isoformat()} has no timezone (UTC expected)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_string(value: str) -> str:
    """A quoted SOQL string literal with quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- helpers ---------------------------------------------------------------------------------


def _text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parent(record: Mapping[str, Any], relationship: str) -> Mapping[str, Any]:
    parent = record.get(relationship)
    return parent if isinstance(parent, Mapping) else {}


def _date(record: Mapping[str, Any], name: str, what: str) -> date | None:
    value = record.get(name)
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise DataError(
            f"{what}: {name} {value!r} is not a date (YYYY-MM-DD expected)", system=SYSTEM
        ) from None


def _whole(value: Any, what: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise DataError(f"{what}: {name} {value!r} is not a number of seats", system=SYSTEM)
    number = Decimal(value)
    if number != number.to_integral_value() or number < 0:
        raise DataError(
            f"{what}: {name} {number} is not a whole, non-negative number of seats",
            system=SYSTEM,
        )
    return int(number)


def _money(value: Any, currency: str, what: str, name: str) -> Money:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise DataError(f"{what}: {name} {value!r} is not an amount", system=SYSTEM)
    try:
        return Money(Decimal(value), currency)
    except MoneyError as exc:
        raise DataError(f"{what}: {name}: {exc}", system=SYSTEM) from None


def _validated(model: type[M], data: dict[str, Any], what: str) -> M:
    try:
        return validate_record(model, data, record=what)
    except RecordValidationError as exc:
        raise DataError(str(exc), system=SYSTEM) from None


def _ids(**pairs: str | None) -> dict[str, str]:
    return {system: value for system, value in pairs.items() if value}


# --- Opportunity -> Order ----------------------------------------------------------------------


def customer_ref(opportunity: Mapping[str, Any], what: str) -> Ref:
    """The deal's account: its Salesforce Id, plus hub, ERP and billing ids it carries."""
    account_id = _text(opportunity, "AccountId")
    if account_id is None:
        raise DataError(f"{what}: AccountId is empty (a deal needs an account)", system=SYSTEM)
    account = _parent(opportunity, "Account")
    return Ref(
        global_id=_text(account, "Hub_Global_Id__c"),
        external_ids=_ids(
            crm=account_id,
            erp=_text(account, "ERP_Customer_Number__c"),
            billing=_text(account, "Billing_Customer_Id__c"),
        ),
    )


def order_line(line: Mapping[str, Any], currency: str, what: str) -> OrderLine:
    """One OpportunityLineItem; ``discount`` is list total minus Salesforce's TotalPrice."""
    line_what = f"{what} line {line.get('Id')}"
    product_id = _text(line, "Product2Id")
    if product_id is None:
        raise DataError(f"{line_what}: Product2Id is empty", system=SYSTEM)
    product = _parent(line, "Product2")
    quantity = _whole(line.get("Quantity"), line_what, "Quantity")
    unit_price = _money(line.get("UnitPrice"), currency, line_what, "UnitPrice")
    amount = _money(line.get("TotalPrice"), currency, line_what, "TotalPrice")
    gross = unit_price * quantity
    discount = gross - amount
    price_id = _text(product, "Billing_Price_Id__c")
    data: dict[str, Any] = {
        "external_ids": _ids(crm=_text(line, "Id")),
        "product": Ref(external_ids=_ids(crm=product_id, erp=_text(product, "ERP_Item_Code__c"))),
        "price_plan": Ref.external("billing", price_id) if price_id else None,
        "description": _text(line, "Description") or _text(product, "Name"),
        "quantity": quantity,
        "unit_price": unit_price,
        "discount": None if discount.amount.is_zero() else discount,
        "amount": amount,
    }
    return _validated(OrderLine, data, line_what)


def order(
    opportunity: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]],
    bill_to_field: str | None = None,
) -> Order:
    """A deal as an Order: booked if won, cancelled if lost, otherwise draft.

    ``number`` is the contract number (Contract_Number__c) or else the Opportunity Id;
    ``start_date`` is the earliest line ServiceDate, or else the CloseDate.
    """
    opportunity_id = _text(opportunity, "Id") or "?"
    what = f"Salesforce Opportunity {opportunity_id}"
    currency = _text(opportunity, "CurrencyIsoCode")
    if currency is None:
        raise DataError(f"{what}: CurrencyIsoCode is empty", system=SYSTEM)
    if not lines:
        raise DataError(
            f"{what}: has no products (OpportunityLineItems); a booked deal needs at least one",
            system=SYSTEM,
        )
    mapped = tuple(order_line(line, currency, what) for line in lines)
    service_dates = [
        d
        for d in (_date(line, "ServiceDate", f"{what} line {line.get('Id')}") for line in lines)
        if d is not None
    ]
    start = min(service_dates) if service_dates else _date(opportunity, "CloseDate", what)
    if start is None:
        raise DataError(f"{what}: neither a line ServiceDate nor CloseDate is set", system=SYSTEM)
    bill_to = _text(opportunity, bill_to_field) if bill_to_field else None
    if bill_to == _text(opportunity, "AccountId"):
        bill_to = None
    if opportunity.get("IsWon") or opportunity.get("StageName") == CLOSED_WON:
        status = OrderStatus.BOOKED
    elif opportunity.get("StageName") == CLOSED_LOST:
        status = OrderStatus.CANCELLED
    else:
        status = OrderStatus.DRAFT
    data: dict[str, Any] = {
        "external_ids": {SYSTEM: opportunity_id},
        "number": _text(opportunity, "Contract_Number__c") or opportunity_id,
        "customer": customer_ref(opportunity, what),
        "bill_to": Ref.external(SYSTEM, bill_to) if bill_to else None,
        "currency": currency,
        "status": status,
        "start_date": start,
        "lines": mapped,
    }
    return _validated(Order, data, what)


# --- Account -> Customer ---------------------------------------------------------------------


def billing_address(account: Mapping[str, Any]) -> Address | None:
    """The Billing* address, when street, city and an ISO country code are all present."""
    street = _text(account, "BillingStreet")
    city = _text(account, "BillingCity")
    country = _text(account, "BillingCountryCode")
    if country is None:
        name = _text(account, "BillingCountry")
        country = name if name is not None and len(name) == 2 and name.isalpha() else None
    if street is None or city is None or country is None:
        return None
    street_lines = [part.strip() for part in street.splitlines() if part.strip()]
    return Address(
        line1=street_lines[0],
        line2=", ".join(street_lines[1:]) or None,
        city=city,
        postal_code=_text(account, "BillingPostalCode"),
        state=_text(account, "BillingState"),
        country=country.upper(),
    )


def customer(
    account: Mapping[str, Any],
    *,
    email_field: str | None = None,
    tax_id_field: str | None = None,
    tax_id_type: str = "eu_vat",
    other_tax_id_fields: Mapping[str, str] | None = None,
) -> Customer:
    """An Account as a Customer; optional custom fields are read only if the record has them."""
    account_id = _text(account, "Id") or "?"
    what = f"Salesforce Account {account_id}"
    name = _text(account, "Name")
    if name is None:
        raise DataError(f"{what}: Name is empty", system=SYSTEM)
    tax_id = _text(account, tax_id_field) if tax_id_field else None
    legal_entity = _text(account, "Legal_Entity__c")
    try:
        address = billing_address(account)
    except ValueError as exc:
        raise DataError(f"{what}: Billing address: {exc}", system=SYSTEM) from None
    data: dict[str, Any] = {
        "global_id": _text(account, "Hub_Global_Id__c"),
        "external_ids": _ids(
            crm=account_id,
            erp=_text(account, "ERP_Customer_Number__c"),
            billing=_text(account, "Billing_Customer_Id__c"),
        ),
        "name": name,
        "email": _text(account, email_field) if email_field else None,
        "phone": _text(account, "Phone"),
        "address": address,
        "tax_ids": (((tax_id_type, tax_id),) if tax_id else ())
        + tuple(
            (kind, value)
            for field, kind in (other_tax_id_fields or {}).items()
            if (value := _text(account, field))
        ),
        "currency": _text(account, "CurrencyIsoCode"),
        "legal_entity": Ref.external(SYSTEM, legal_entity) if legal_entity else None,
        "parent": Ref.external(SYSTEM, parent) if (parent := _text(account, "ParentId")) else None,
    }
    limit, currency = account.get("Credit_Limit__c"), _text(account, "CurrencyIsoCode")
    if limit is not None and currency is not None:
        data["credit_limit"] = _money(limit, currency, what, "Credit_Limit__c")
    return _validated(Customer, data, what)


def changed_accounts_soql(since: datetime | None) -> str:
    """Onboarded Accounts (they carry the hub's global id) changed at or after ``since``."""
    where = "Hub_Global_Id__c != null"
    if since is not None:
        where += f" AND SystemModstamp >= {soql_datetime(since)}"
    return f"SELECT Id, SystemModstamp FROM Account WHERE {where} ORDER BY SystemModstamp, Id"


def changed_account(record: Mapping[str, Any]) -> ChangedAccount:
    account_id = _text(record, "Id") or "?"
    stamp = _text(record, "SystemModstamp")
    try:
        changed = datetime.fromisoformat(str(stamp).replace("+0000", "+00:00"))
    except ValueError:
        changed = None
    if changed is None or changed.utcoffset() is None:
        raise DataError(
            f"Salesforce Account {account_id}: SystemModstamp {stamp!r} is not a UTC date-time",
            system=SYSTEM,
        )
    return ChangedAccount(account_id, changed.astimezone(UTC))


# --- Product2 -> Product ---------------------------------------------------------------------


def product(record: Mapping[str, Any]) -> Product:
    product_id = _text(record, "Id") or "?"
    what = f"Salesforce Product2 {product_id}"
    name = _text(record, "Name")
    if name is None:
        raise DataError(f"{what}: Name is empty", system=SYSTEM)
    data: dict[str, Any] = {
        "external_ids": _ids(crm=product_id, erp=_text(record, "ERP_Item_Code__c")),
        "name": name,
        "sku": _text(record, "ProductCode"),
        "description": _text(record, "Description"),
        "unit_label": _text(record, "QuantityUnitOfMeasure"),
        "active": bool(record.get("IsActive")),
    }
    return _validated(Product, data, what)


# --- Amendment_Request__c -> Amendment -------------------------------------------------------

_PRORATIONS: Final = {p.value: p for p in ProrationBehavior}


def amendment(request: Mapping[str, Any], number: int) -> Amendment:
    """A seat-change request as an Amendment, effective at 00:00 UTC of its Effective_Date__c.

    The subscription is referenced by its Subscription__c Id (``crm``) and, once billing has
    written it back, Billing_Subscription_Id__c (``billing``); the item by
    Billing_Subscription_Item_Id__c (``billing``) or else by the product's Product2 Id (``crm``).
    """
    request_id = _text(request, "Id") or "?"
    what = f"Salesforce amendment request {request_id}"
    subscription_id = _text(request, "Subscription__c")
    if subscription_id is None:
        raise DataError(f"{what}: Subscription__c is empty", system=SYSTEM)
    subscription = _parent(request, "Subscription__r")
    item_id = _text(request, "Billing_Subscription_Item_Id__c")
    product_id = _text(request, "Product__c")
    if item_id is None and product_id is None:
        raise DataError(
            f"{what}: name the seat line: Billing_Subscription_Item_Id__c or Product__c",
            system=SYSTEM,
        )
    effective = _date(request, "Effective_Date__c", what)
    if effective is None:
        raise DataError(f"{what}: Effective_Date__c is empty", system=SYSTEM)
    new_quantity = request.get("New_Quantity__c")
    if new_quantity is None:
        raise DataError(f"{what}: New_Quantity__c is empty", system=SYSTEM)
    previous = request.get("Previous_Quantity__c")
    if previous is None:
        previous = subscription.get("Quantity__c")
    proration_text = _text(request, "Proration__c")
    proration = _PRORATIONS.get(proration_text or ProrationBehavior.CREATE_PRORATIONS.value)
    if proration is None:
        raise DataError(
            f"{what}: Proration__c {proration_text!r} is not one of {sorted(_PRORATIONS)}",
            system=SYSTEM,
        )
    data: dict[str, Any] = {
        "external_ids": {SYSTEM: request_id},
        "subscription": Ref(
            external_ids=_ids(
                crm=subscription_id, billing=_text(subscription, "Billing_Subscription_Id__c")
            )
        ),
        "subscription_item": (
            Ref.external("billing", item_id) if item_id else Ref.external(SYSTEM, str(product_id))
        ),
        "amendment_number": number,
        "effective_at": datetime.combine(effective, time(0), tzinfo=UTC),
        "previous_quantity": None if previous is None else _whole(previous, what, "quantity"),
        "new_quantity": _whole(new_quantity, what, "New_Quantity__c"),
        "proration_behavior": proration,
        "reason": _text(request, "Reason__c"),
    }
    return _validated(Amendment, data, what)


# --- reconciliation ledger -------------------------------------------------------------------

_LEDGER_CONTRACT_STATUS: Final = {
    "Active": "active",
    "Canceled": "canceled",
    "Past Due": "past_due",
}
_CENT = Decimal("0.01")


def ledger_soql(kind: LedgerKind, since: datetime | None) -> str:
    """What reconciliation reads: onboarded accounts, won deals, or the invoices shown."""
    created = f" AND CreatedDate >= {soql_datetime(since)}" if since else ""
    if kind is LedgerKind.CUSTOMER:
        return (
            "SELECT Id, Name, CurrencyIsoCode, Hub_Global_Id__c, Billing_Customer_Id__c, "
            "ERP_Customer_Number__c FROM Account WHERE Hub_Global_Id__c != null"
            f"{created} ORDER BY Id"
        )
    if kind is LedgerKind.CONTRACT:
        return (
            "SELECT Id, AccountId, CurrencyIsoCode, Contract_Number__c, Subscription_Id__c, "
            f"Subscription_Status__c FROM Opportunity WHERE IsWon = true{created} ORDER BY Id"
        )
    return (
        "SELECT Id, Invoice_Number__c, Amount__c, Balance__c, Status__c, Account__c, "
        f"Account__r.CurrencyIsoCode FROM Invoice__c WHERE Id != null{created} ORDER BY Id"
    )


def _cents(value: Any, currency: str) -> Money:
    return Money(Decimal(str(value if value is not None else 0)).quantize(_CENT), currency)


def ledger_entry(kind: LedgerKind, record: Mapping[str, Any]) -> LedgerEntry:
    """One Account, won Opportunity or Invoice__c as reconciliation compares it."""
    ident = str(record["Id"])
    if kind is LedgerKind.CUSTOMER:
        links = _ids(
            hub=_text(record, "Hub_Global_Id__c"),
            billing=_text(record, "Billing_Customer_Id__c"),
            erp=_text(record, "ERP_Customer_Number__c"),
        )
        return LedgerEntry(
            kind=kind,
            system="crm",
            id=ident,
            number=_text(record, "Name"),
            customer=ident,
            currency=_text(record, "CurrencyIsoCode"),
            status="active",
            links=links,
        )
    if kind is LedgerKind.CONTRACT:
        status = _text(record, "Subscription_Status__c") or ""
        return LedgerEntry(
            kind=kind,
            system="crm",
            id=ident,
            number=_text(record, "Contract_Number__c") or ident,
            customer=_text(record, "AccountId"),
            contract=_text(record, "Contract_Number__c") or ident,
            currency=_text(record, "CurrencyIsoCode"),
            status=_LEDGER_CONTRACT_STATUS.get(status, "pending"),
            links=_ids(billing=_text(record, "Subscription_Id__c")),
            state=status,
        )
    currency = _text(_parent(record, "Account__r"), "CurrencyIsoCode") or "USD"
    status = _text(record, "Status__c") or ""
    return LedgerEntry(
        kind=kind,
        system="crm",
        id=ident,
        number=_text(record, "Invoice_Number__c"),
        customer=_text(record, "Account__c"),
        currency=_text(_parent(record, "Account__r"), "CurrencyIsoCode"),
        total=_cents(record.get("Amount__c"), currency),
        balance=_cents(record.get("Balance__c"), currency),
        status="paid" if status == "Paid" else "open",
        state=status,
    )


# --- status write-back: the hub's business statuses as Salesforce records ---------------------


@dataclass(frozen=True)
class SObjectUpdate:
    """One record written back: its sObject, the field that finds it (an external id field for
    an upsert, ``Id`` for an update of an existing record), that field's value, and the fields."""

    object_type: str
    external_id_field: str
    external_id: str
    fields: dict[str, Any]


INVOICE_STANDING: Final = {
    InvoiceStanding.OPEN: "Open",
    InvoiceStanding.PAID: "Paid",
    InvoiceStanding.OVERDUE: "Overdue",
    InvoiceStanding.REFUNDED: "Refunded",
    InvoiceStanding.PARTIALLY_REFUNDED: "Partially Refunded",
}
"""Invoice__c.Status__c and Opportunity.Invoice_Status__c picklist values."""
CONTRACT_STATUS: Final[Mapping[SubscriptionStatus, str]] = {
    SubscriptionStatus.ACTIVE: "Active",
    SubscriptionStatus.TRIALING: "Active",
    SubscriptionStatus.PAST_DUE: "Past Due",
    SubscriptionStatus.UNPAID: "Past Due",
    SubscriptionStatus.CANCELED: "Canceled",
    SubscriptionStatus.INCOMPLETE_EXPIRED: "Expired",
}
"""Subscription__c.Status__c picklist values (anything else is Pending)."""
DEAL_SUBSCRIPTION_STATUS: Final[Mapping[SubscriptionStatus, str]] = {
    k: v for k, v in CONTRACT_STATUS.items() if k is not SubscriptionStatus.INCOMPLETE_EXPIRED
}
"""Opportunity.Subscription_Status__c picklist values (it has no Expired: Pending)."""
PENDING: Final = "Pending"


def status_record(
    status: CrmStatus,
    *,
    amendment_object: str,
    tax_id_fields: Sequence[tuple[str, str]] = (),
) -> SObjectUpdate:
    """The Salesforce record a business status is written to; upserted by an external id where
    the hub creates the record (Invoice__c, Subscription__c), else updated by its Id.
    ``tax_id_fields`` are the Account's tax registration fields as (tax id type, field), the
    main one first: it is cleared when the ERP has none of its type, the others only written."""
    match status:
        case AccountFinancials():
            values: dict[str, Any] = {}
            if status.tax_ids is not None:
                for index, (kind, field) in enumerate(tax_id_fields):
                    value = next((t.value for t in status.tax_ids if t.type == kind), None)
                    if value is None and index == 0 and kind.endswith("_vat"):
                        # the main VAT field shows any VAT registration (gb_vat, ch_vat ...)
                        vats = (t.value for t in status.tax_ids if t.type.endswith("_vat"))
                        value = next(vats, None)
                    if value is not None or index == 0:
                        values[field] = value
            if status.legal_entity is not None:
                values["Legal_Entity__c"] = status.legal_entity or None
            if status.credit_limit is not None:
                values["Credit_Limit__c"] = status.credit_limit.amount
            return SObjectUpdate("Account", "Id", status.account_id, values)
        case CustomerLinks():
            return SObjectUpdate(
                "Account",
                "Id",
                status.account_id,
                {
                    "Hub_Global_Id__c": status.global_id,
                    "ERP_Customer_Number__c": status.erp_customer_id,
                    "Billing_Customer_Id__c": status.billing_customer_id,
                    "Legal_Entity__c": status.legal_entity,
                },
            )
        case DealSubscribed():
            return _opportunity(
                status.opportunity_id,
                Subscription_Id__c=status.subscription_id,
                Subscription_Status__c=DEAL_SUBSCRIPTION_STATUS.get(status.status, PENDING),
                Hub_Correlation_Id__c=status.correlation_id,
            )
        case DealActivated():
            start = status.billing_start
            return _opportunity(
                status.opportunity_id,
                Subscription_Id__c=status.subscription_id,
                Subscription_Status__c="Active",
                Billing_Start_Date__c=start.isoformat() if start else None,
            )
        case DealCanceled():
            return _opportunity(status.opportunity_id, Subscription_Status__c="Canceled")
        case DealInvoiceStanding():
            return _opportunity(
                status.opportunity_id, Invoice_Status__c=INVOICE_STANDING[status.standing]
            )
        case InvoiceState():
            return SObjectUpdate(
                "Invoice__c",
                "Invoice_Number__c",
                status.number,
                {
                    "Account__c": status.account_id,
                    "Amount__c": status.total.amount,
                    "Balance__c": status.balance.amount,
                    "Status__c": INVOICE_STANDING[status.standing],
                    "Due_Date__c": status.due_date.isoformat() if status.due_date else None,
                },
            )
        case ContractState():
            return SObjectUpdate(
                "Subscription__c",
                "Billing_Subscription_Id__c",
                status.subscription_id,
                {
                    "Account__c": status.account_id,
                    "Opportunity__c": status.opportunity_id,
                    "Status__c": CONTRACT_STATUS.get(status.status, PENDING),
                    "Quantity__c": status.seats,
                    "Start_Date__c": status.starts.isoformat(),
                    "End_Date__c": status.ends.isoformat(),
                },
            )
        case AmendmentOutcome():
            fields: dict[str, Any] = {"Status__c": "Applied" if status.applied else "Failed"}
            if status.applied and status.previous_seats is not None:
                fields["Previous_Quantity__c"] = status.previous_seats
            return SObjectUpdate(amendment_object, "Id", status.request_id, fields)
    raise DataError(f"status {status!r} has no Salesforce record", system=SYSTEM)


def _opportunity(opportunity_id: str, **fields: Any) -> SObjectUpdate:
    return SObjectUpdate("Opportunity", "Id", opportunity_id, fields)


# --- duplicate accounts and CRM merges ---------------------------------------------------------

DUPLICATE_OF_FIELD: Final = "Q2C_Duplicate_Of__c"
"""Account lookup: the account holding the customer's hub ids that this one duplicates."""
MERGE_STATUS_FIELD: Final = "Q2C_Merge_Status__c"
"""Account picklist for sales operations: ``Pending Merge`` while the duplicate waits."""
PENDING_MERGE: Final = "Pending Merge"


def duplicate_flag(flag: DuplicateAccount) -> SObjectUpdate:
    """The duplicate's Account, updated by Id: a lookup to the survivor and the merge status;
    the unique external-id fields (``Hub_Global_Id__c``, ``ERP_Customer_Number__c``) stay on the
    survivor."""
    return SObjectUpdate(
        "Account",
        "Id",
        flag.account_id,
        {DUPLICATE_OF_FIELD: flag.survivor_account_id, MERGE_STATUS_FIELD: PENDING_MERGE},
    )


def merges_soql(since: datetime | None) -> str:
    """Accounts deleted by a merge (``queryAll``: ``MasterRecordId`` names the survivor)."""
    where = "IsDeleted = true AND MasterRecordId != null"
    if since is not None:
        where += f" AND SystemModstamp >= {soql_datetime(since)}"
    return (
        f"SELECT Id, MasterRecordId, SystemModstamp FROM Account WHERE {where} "
        "ORDER BY SystemModstamp, Id"
    )


def account_merge(record: dict[str, Any]) -> AccountMerge:
    what = f"Salesforce Account {record.get('Id')}"
    loser, survivor = _text(record, "Id"), _text(record, "MasterRecordId")
    stamp = record.get("SystemModstamp")
    if loser is None or survivor is None or not isinstance(stamp, str):
        raise DataError(f"{what}: a merged account needs Id, MasterRecordId and SystemModstamp")
    try:
        merged_at = datetime.fromisoformat(stamp.replace("Z", "+00:00").replace("+0000", "+00:00"))
    except ValueError:
        raise DataError(f"{what}: SystemModstamp {stamp!r} is not a datetime") from None
    return AccountMerge(loser, survivor, merged_at)
