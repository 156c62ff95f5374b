"""What each system shows for one customer, read directly from it, and the invariants between
the three: each comparison is a pure function of the views, returning every divergence found.

Billing is read with the stripe SDK, the ERP through the sandbox's neutral reader (Tryton's
JSON-RPC or the legacy ERP's SOAP), the CRM with simple-salesforce; never through the hub's store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import stripe

from quote2cash.demo.erp_reader import ErpReader

ZERO = Decimal(0)
CENT = Decimal("0.01")
ENTITY_OF_CURRENCY = {"USD": "US", "EUR": "DE"}
ONE_TIME = frozenset({"ONBOARD"})
"""ERP item codes the catalog sells once (its billing price is a one-time price)."""


def _minor(amount: int, currency: str) -> Decimal:
    return (Decimal(amount) / 100).quantize(CENT)


@dataclass(frozen=True)
class BillingInvoice:
    id: str
    number: str
    status: str
    """open or paid (drafts and voids are not documents)."""
    currency: str
    total: Decimal
    tax: Decimal
    remaining: Decimal
    paid: Decimal
    refunded: Decimal
    period: tuple[date, date] | None
    """First day served and last day served over its lines (None: no service period)."""
    past_due: bool = False


@dataclass(frozen=True)
class BillingSubscription:
    id: str
    status: str
    quantity: int
    """Sum of the licensed items' quantities (what the CRM shows as Quantity__c)."""
    period_value: Decimal
    """What one period of the licensed items charges, after discounts."""
    cancel_at_period_end: bool = False


@dataclass
class BillingView:
    customers: list[str] = field(default_factory=list)
    balance: Decimal = ZERO
    """The customer's balance (negative: credit the customer holds)."""
    currency: str = ""
    subscriptions: list[BillingSubscription] = field(default_factory=list)
    invoices: list[BillingInvoice] = field(default_factory=list)

    def owed(self) -> Decimal:
        """Open invoices, what was refunded of paid ones (owed again), net of the balance."""
        open_ = sum((i.remaining for i in self.invoices if i.status == "open"), ZERO)
        return open_ + sum((i.refunded for i in self.invoices), ZERO) + self.balance


@dataclass(frozen=True)
class ErpInvoice:
    number: str
    state: str
    """open or paid."""
    currency: str
    entity: str
    total: Decimal
    tax: Decimal
    to_pay: Decimal
    period: tuple[date, date] | None


@dataclass
class ErpView:
    parties: int = 0
    invoices: list[ErpInvoice] = field(default_factory=list)
    sales: dict[str, Decimal] = field(default_factory=dict)
    """sale reference -> total (the booking and its amendment deltas)."""
    one_time: Decimal = ZERO
    """What the sales book for one-time items (charged once, not every period)."""
    sale_references: list[str] = field(default_factory=list)
    keeps_periods: bool = True
    """Whether this ERP keeps service periods on its documents (the legacy ERP does not)."""

    def receivable(self) -> Decimal:
        return sum((i.to_pay for i in self.invoices if i.state == "open"), ZERO)


@dataclass(frozen=True)
class CrmInvoice:
    number: str
    status: str
    amount: Decimal
    balance: Decimal


@dataclass(frozen=True)
class CrmSubscription:
    billing_id: str
    status: str
    quantity: int


@dataclass
class CrmView:
    accounts: int = 0
    invoices: list[CrmInvoice] = field(default_factory=list)
    subscriptions: list[CrmSubscription] = field(default_factory=list)
    opportunity_status: str | None = None


# --- comparisons -----------------------------------------------------------------------------


def duplicates(billing: BillingView, erp: ErpView, crm: CrmView, *, booked: bool) -> list[str]:
    """One customer everywhere (none for a deal never booked), one subscription, each invoice,
    sale and CRM record once."""
    found: list[str] = []
    want = 1 if booked else 0
    if len(billing.customers) != 1:
        found.append(f"billing has {len(billing.customers)} customers, expected 1")
    if erp.parties != want:
        found.append(f"ERP has {erp.parties} parties, expected {want}")
    if crm.accounts != 1:
        found.append(f"CRM has {crm.accounts} accounts, expected 1")
    if len(billing.subscriptions) != want:
        found.append(f"billing has {len(billing.subscriptions)} subscriptions, expected {want}")
    if len(crm.subscriptions) != want:
        found.append(f"CRM has {len(crm.subscriptions)} Subscription__c, expected {want}")
    for what, numbers in (
        ("billing invoice", [i.number for i in billing.invoices]),
        ("ERP invoice", [i.number for i in erp.invoices]),
        ("CRM Invoice__c", [i.number for i in crm.invoices]),
        ("ERP sale", erp.sale_references),
    ):
        for number, count in Counter(numbers).items():
            if count > 1:
                found.append(f"{what} {number} appears {count} times")
    return found


def invoices_match(billing: BillingView, erp: ErpView, entity: str) -> list[str]:
    """Every billing invoice and credit note has exactly one ERP document equal in total, tax,
    currency, entity and service period; the ERP has nothing billing does not."""
    found: list[str] = []
    in_erp = {i.number: i for i in erp.invoices}
    for bill in billing.invoices:
        doc = in_erp.get(bill.number)
        if doc is None:
            found.append(f"billing invoice {bill.number} ({bill.total}) has no ERP document")
            continue
        where = f"invoice {bill.number}"
        if doc.total != bill.total:
            found.append(f"{where}: total billing {bill.total} != ERP {doc.total}")
        if doc.tax != bill.tax:
            found.append(f"{where}: tax billing {bill.tax} != ERP {doc.tax}")
        if doc.currency != bill.currency:
            found.append(f"{where}: currency billing {bill.currency} != ERP {doc.currency}")
        if doc.entity != entity:
            found.append(f"{where}: posted by entity {doc.entity}, the contract's is {entity}")
        if bill.period is not None and doc.period is not None and doc.period != bill.period:
            found.append(f"{where}: service period billing {bill.period} != ERP {doc.period}")
        if bill.period is not None and doc.period is None and bill.total > 0 and erp.keeps_periods:
            found.append(f"{where}: the ERP document has no service period")
    billed = {b.number for b in billing.invoices}
    for doc in erp.invoices:
        if doc.number not in billed:
            found.append(f"ERP invoice {doc.number} ({doc.total}) has no billing invoice")
    return found


def owed_match(billing: BillingView, erp: ErpView) -> list[str]:
    owed, receivable = billing.owed(), erp.receivable()
    if owed != receivable:
        return [f"customer owes {owed} in billing but {receivable} in the ERP receivable"]
    return []


def expected_crm_status(bill: BillingInvoice) -> set[str]:
    """The Invoice__c statuses that say what billing says of ``bill``."""
    if bill.total < 0:
        return {"Paid"}
    if bill.refunded > 0:
        return {"Refunded"} if bill.refunded >= bill.paid else {"Partially Refunded"}
    if bill.status == "paid":
        return {"Paid"}
    return {"Open", "Overdue"} if bill.past_due else {"Open"}


def crm_matches(billing: BillingView, crm: CrmView) -> list[str]:
    """The CRM's invoice status and balance, subscription status and quantity equal billing's."""
    found: list[str] = []
    in_crm = {i.number: i for i in crm.invoices}
    for bill in billing.invoices:
        shown = in_crm.get(bill.number)
        if shown is None:
            found.append(f"invoice {bill.number} is not in the CRM")
            continue
        where = f"CRM invoice {bill.number}"
        if shown.amount != bill.total:
            found.append(f"{where}: amount {shown.amount} != billing total {bill.total}")
        balance = bill.remaining + bill.refunded if bill.status == "open" else bill.refunded
        if shown.balance != balance:
            found.append(f"{where}: balance {shown.balance} != billing's {balance}")
        wanted = expected_crm_status(bill)
        if shown.status not in wanted:
            found.append(f"{where}: status {shown.status} but billing says {sorted(wanted)}")
    billed = {b.number for b in billing.invoices}
    for shown in crm.invoices:
        if shown.number not in billed:
            found.append(f"CRM invoice {shown.number} has no billing invoice")
    crm_subs = {s.billing_id: s for s in crm.subscriptions}
    for sub in billing.subscriptions:
        mirrored = crm_subs.get(sub.id)
        if mirrored is None:
            found.append(f"subscription {sub.id} is not in the CRM")
            continue
        status = CRM_SUBSCRIPTION_STATUS.get(sub.status, sub.status)
        if mirrored.status != status:
            found.append(
                f"subscription {sub.id}: CRM {mirrored.status}, billing {sub.status} ({status})"
            )
        if mirrored.quantity != sub.quantity:
            found.append(
                f"subscription {sub.id}: CRM quantity {mirrored.quantity}, billing {sub.quantity}"
            )
    canceled = [s for s in billing.subscriptions if s.status == "canceled"]
    if canceled and crm.opportunity_status != "Canceled":
        found.append(f"opportunity shows {crm.opportunity_status}, billing canceled")
    return found


CRM_SUBSCRIPTION_STATUS = {
    "active": "Active",
    "trialing": "Active",
    "past_due": "Past Due",
    "canceled": "Canceled",
    "unpaid": "Past Due",
}


def bookings_match(billing: BillingView, erp: ErpView) -> list[str]:
    """ERP bookings (the sale and its amendment deltas, less one-time items) add up to what
    billing charges per period for a running contract, and to nothing more for one canceled at
    once."""
    found: list[str] = []
    booked = sum(erp.sales.values(), ZERO) - erp.one_time
    for sub in billing.subscriptions:
        if sub.status in ("active", "past_due", "trialing") and booked != sub.period_value:
            once = f", less {erp.one_time} one-time" if erp.one_time else ""
            found.append(
                f"ERP bookings add up to {booked} ({erp.sales}{once}); billing charges "
                f"{sub.period_value} a period for {sub.id}"
            )
    return found


def documents_seen(billing: BillingView, erp: ErpView, crm: CrmView, *, booked: bool) -> list[str]:
    """A booked deal has at least its first invoice and its booking everywhere: without them
    every other comparison would hold vacuously."""
    if not booked:
        return []
    found = []
    for system, count in (
        ("billing invoice", len(billing.invoices)),
        ("ERP invoice", len(erp.invoices)),
        ("ERP sale", len(erp.sales)),
        ("CRM Invoice__c", len(crm.invoices)),
    ):
        if count == 0:
            found.append(f"a booked deal shows no {system}")
    return found


def all_divergences(
    billing: BillingView, erp: ErpView, crm: CrmView, *, entity: str, booked: bool
) -> list[str]:
    return [
        *documents_seen(billing, erp, crm, booked=booked),
        *duplicates(billing, erp, crm, booked=booked),
        *invoices_match(billing, erp, entity),
        *owed_match(billing, erp),
        *crm_matches(billing, crm),
        *bookings_match(billing, erp),
    ]


# --- readers ---------------------------------------------------------------------------------


def _period(lines: list[Any]) -> tuple[date, date] | None:
    spans = [
        (int(ln["period"]["start"]), int(ln["period"]["end"]))
        for ln in lines
        if ln.get("period") and int(ln["period"]["end"]) - int(ln["period"]["start"]) > 86400
    ]
    if not spans:
        return None
    start = datetime.fromtimestamp(min(s for s, _ in spans), UTC).date()
    end = datetime.fromtimestamp(max(e for _, e in spans), UTC).date()
    return start, end - timedelta(days=1)


def read_billing(client: stripe.StripeClient, name: str, now: int | None = None) -> BillingView:
    """Everything billing holds for the customer called ``name``."""
    view = BillingView()
    customers = [
        c
        for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()
        if c.name == name
    ]
    view.customers = [str(c.id) for c in customers]
    if len(customers) != 1:
        return view
    customer = customers[0]
    view.balance = _minor(int(customer.balance or 0), str(customer.currency or "usd").upper())
    refunded = _refunded_per_invoice(client, str(customer.id))
    for inv in client.v1.invoices.list(
        params={"customer": customer.id, "limit": 100}
    ).auto_paging_iter():
        if inv.status not in ("open", "paid") or not inv.number:
            continue
        currency = str(inv.currency).upper()
        view.currency = currency
        data = inv.to_dict()
        back = refunded.get(str(inv.id), 0)
        tax = sum(int(t.get("amount") or 0) for t in data.get("total_taxes") or [])
        tax = tax or sum(int(t.get("amount") or 0) for t in data.get("total_tax_amounts") or [])
        due = data.get("due_date")
        attempted = bool(data.get("attempted"))
        view.invoices.append(
            BillingInvoice(
                str(inv.id),
                str(inv.number),
                str(inv.status),
                currency,
                _minor(int(inv.total), currency),
                _minor(tax, currency),
                _minor(int(inv.amount_remaining), currency),
                _minor(int(inv.amount_paid), currency),
                _minor(back, currency),
                _period(list((data.get("lines") or {}).get("data") or [])),
                past_due=attempted or (due is not None and now is not None and due < now),
            )
        )
    for sub in client.v1.subscriptions.list(
        params={
            "customer": customer.id,
            "status": "all",
            "limit": 100,
            "expand": ["data.items.data.discounts"],
        }
    ).auto_paging_iter():
        view.subscriptions.append(_subscription(client, sub.to_dict()))
    return view


def _refunded_per_invoice(client: stripe.StripeClient, customer: str) -> dict[str, int]:
    """Billing invoice id -> minor units refunded of the card payments that paid it."""
    by_intent = {
        str(c.payment_intent): int(c.amount_refunded)
        for c in client.v1.charges.list(
            params={"customer": customer, "limit": 100}
        ).auto_paging_iter()
        if c.amount_refunded and c.payment_intent
    }
    out: dict[str, int] = {}
    if not by_intent:
        return out
    for paid in client.v1.invoice_payments.list(
        params={"status": "paid", "limit": 100}
    ).auto_paging_iter():
        intent = str(paid.payment.payment_intent or "")
        if intent in by_intent:
            out[str(paid.invoice)] = out.get(str(paid.invoice), 0) + by_intent[intent]
    return out


def item_period_charge(gross_minor: int, percents: list[Decimal], currency: str) -> Decimal:
    """What billing charges a period for one licensed item of ``gross_minor`` (unit amount x
    quantity) under its percent-off discounts, in order: each discount is rounded to the cent on
    its own, half up (half a cent off goes to the customer), and taken off what the previous left.
    Billing rounds the discount, not the net: 12.5 % off 585.00 is 73.125, so 73.13 off, 511.87
    (rounding the net half-even would say 511.88, a cent billing never charges)."""
    amount = _minor(gross_minor, currency)
    for percent in percents:
        amount -= (amount * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    return amount


def _subscription(client: stripe.StripeClient, sub: dict[str, Any]) -> BillingSubscription:
    quantity, value = 0, ZERO
    currency = str(sub.get("currency") or "usd").upper()
    for item in (sub.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        if (price.get("recurring") or {}).get("usage_type") == "metered":
            continue
        count = int(item.get("quantity") or 0)
        quantity += count
        percents = [
            Decimal(str(coupon["percent_off"]))
            for coupon in (_coupon(client, d) for d in item.get("discounts") or [])
            if coupon and coupon.get("percent_off")
        ]
        value += item_period_charge(int(price.get("unit_amount") or 0) * count, percents, currency)
    return BillingSubscription(
        str(sub["id"]),
        str(sub["status"]),
        quantity,
        value,
        bool(sub.get("cancel_at_period_end")),
    )


def _coupon(client: stripe.StripeClient, discount: Any) -> dict[str, Any] | None:
    """The percent-off coupon of an (expanded) item discount."""
    if not isinstance(discount, dict):
        raise AssertionError(f"item discount {discount!r} was not expanded")
    coupon = discount.get("coupon") or (discount.get("source") or {}).get("coupon")
    if isinstance(coupon, str):
        return dict(client.v1.coupons.retrieve(coupon).to_dict())
    return coupon if isinstance(coupon, dict) else None


async def read_erp(erp: ErpReader, name: str) -> ErpView:
    """The customer called ``name`` in the ERP, its documents and its sales, read through the
    neutral reader (the same on Tryton and on the legacy ERP)."""
    books = await erp.customer_books(name)
    view = ErpView(parties=books.customers, keeps_periods=books.keeps_service_periods)
    view.invoices = [
        ErpInvoice(d.reference, d.status, d.currency, d.entity, d.total, d.tax, d.due, d.period)
        for d in books.documents
    ]
    view.sale_references = [reference for reference, _ in books.sales]
    for reference, total in books.sales:
        view.sales[reference] = view.sales.get(reference, ZERO) + total
    view.one_time = sum((amount for code, amount in books.sale_lines if code in ONE_TIME), ZERO)
    return view


def read_crm(sf: Any, account_id: str, opportunity_id: str | None) -> CrmView:
    """The account's Invoice__c and Subscription__c records, and its deal's status."""
    view = CrmView()
    name = sf.Account.get(account_id)["Name"]
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    view.accounts = int(
        sf.query(f"SELECT COUNT() FROM Account WHERE Name = '{escaped}'")["totalSize"]
    )
    for row in sf.query_all(
        "SELECT Invoice_Number__c, Status__c, Amount__c, Balance__c FROM Invoice__c "
        f"WHERE Account__c = '{account_id}'"
    )["records"]:
        view.invoices.append(
            CrmInvoice(
                str(row["Invoice_Number__c"]),
                str(row["Status__c"]),
                Decimal(str(row["Amount__c"] or 0)).quantize(CENT),
                Decimal(str(row["Balance__c"] or 0)).quantize(CENT),
            )
        )
    for row in sf.query_all(
        "SELECT Billing_Subscription_Id__c, Status__c, Quantity__c FROM Subscription__c "
        f"WHERE Account__c = '{account_id}'"
    )["records"]:
        view.subscriptions.append(
            CrmSubscription(
                str(row["Billing_Subscription_Id__c"]),
                str(row["Status__c"]),
                int(row["Quantity__c"] or 0),
            )
        )
    if opportunity_id:
        view.opportunity_status = sf.Opportunity.get(opportunity_id).get("Subscription_Status__c")
    return view
