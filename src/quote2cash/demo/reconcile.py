"""Three-way comparison at the end of the demo: every invoice read back from billing (the stripe
SDK), the ERP (JSON-RPC) and the CRM (SOQL), matched by invoice number, compared to the cent:
its total, and what is still owed on it (billing: the amount remaining plus what was refunded
of its payments; the ERP: the amount to pay; the CRM: Balance__c).

Only reads; each system is asked directly, never through the hub's own state.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import stripe

from quote2cash.canonical import Money
from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.connectors.tryton.mapping import GLOBAL_ID_MARK

SYSTEMS = ("billing", "erp", "crm")
PAID = {"billing": "paid", "erp": "paid", "crm": "Paid"}


@dataclass(frozen=True)
class SeenInvoice:
    number: str
    currency: str
    total: Decimal
    paid: bool
    where: str
    """Billing: the customer; ERP: the company (legal entity); CRM: the account."""
    balance: Decimal
    """What the customer still owes on it (refunds owed again included)."""
    status: str = ""


@dataclass
class Totals:
    count: int = 0
    amount: Decimal = Decimal(0)
    paid_count: int = 0
    paid_amount: Decimal = Decimal(0)

    def add(self, invoice: SeenInvoice) -> None:
        self.count += 1
        self.amount += invoice.total
        if invoice.paid:
            self.paid_count += 1
            self.paid_amount += invoice.total


@dataclass
class Reconciliation:
    invoices: dict[str, dict[str, SeenInvoice]] = field(default_factory=dict)
    """system -> invoice number -> what that system shows."""
    subscriptions: int = 0
    erp_bookings: int = 0
    crm_active_deals: int = 0
    erp_parties: int = 0
    billing_customers: int = 0
    entity_mismatches: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, Totals]]:
        """currency -> system -> totals."""
        out: dict[str, dict[str, Totals]] = defaultdict(lambda: {s: Totals() for s in SYSTEMS})
        for system, seen in self.invoices.items():
            for invoice in seen.values():
                out[invoice.currency][system].add(invoice)
        return dict(out)

    def differences(self) -> list[str]:
        """Every invoice that is missing somewhere or differs by a cent or in paid status."""
        problems: list[str] = []
        numbers = set().union(*(set(v) for v in self.invoices.values())) if self.invoices else set()
        for number in sorted(numbers):
            seen = {s: self.invoices.get(s, {}).get(number) for s in SYSTEMS}
            missing = [s for s, inv in seen.items() if inv is None]
            if missing:
                problems.append(f"invoice {number} is missing in {', '.join(missing)}")
                continue
            amounts = {s: (inv.total, inv.currency) for s, inv in seen.items() if inv}
            if len(set(amounts.values())) != 1:
                problems.append(f"invoice {number}: amounts differ {amounts}")
            owed = {s: inv.balance for s, inv in seen.items() if inv}
            if len(set(owed.values())) != 1:
                problems.append(f"invoice {number}: balances differ {owed}")
        problems += self.entity_mismatches
        return problems

    @property
    def reconciled(self) -> bool:
        return not self.differences() and bool(self.invoices.get("billing"))


def _refunded_per_invoice(client: stripe.StripeClient) -> dict[str, int]:
    """Billing invoice id -> minor units refunded of the payments that paid it."""
    refunded = {
        str(c.payment_intent): int(c.amount_refunded)
        for c in client.v1.charges.list(params={"limit": 100}).auto_paging_iter()
        if c.amount_refunded and c.payment_intent
    }
    out: dict[str, int] = defaultdict(int)
    if not refunded:
        return out
    for paid in client.v1.invoice_payments.list(
        params={"status": "paid", "limit": 100}
    ).auto_paging_iter():
        intent = str(paid.payment.payment_intent or "")
        out[str(paid.invoice)] += refunded.get(intent, 0)
    return out


def read_billing(client: stripe.StripeClient, rec: Reconciliation) -> None:
    seen: dict[str, SeenInvoice] = {}
    refunded = _refunded_per_invoice(client)
    for inv in client.v1.invoices.list(params={"limit": 100}).auto_paging_iter():
        if inv.status not in ("open", "paid") or not inv.number:
            continue
        currency = str(inv.currency).upper()
        owed = int(inv.amount_remaining) + refunded.get(str(inv.id), 0)
        seen[str(inv.number)] = SeenInvoice(
            str(inv.number),
            currency,
            Money.from_stripe_amount(int(inv.total), currency).amount,
            inv.status == "paid",
            str(inv.customer),
            Money.from_stripe_amount(owed, currency).amount,
            str(inv.status),
        )
    rec.invoices["billing"] = seen
    rec.subscriptions = sum(
        1
        for s in client.v1.subscriptions.list(
            params={"limit": 100, "status": "all"}
        ).auto_paging_iter()
        if s.status in ("active", "trialing", "past_due")
    )
    rec.billing_customers = sum(
        1 for _ in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()
    )


async def read_erp(erp: TrytonClient, rec: Reconciliation) -> None:
    rows = await erp.model("account.invoice").search_read(
        [("type", "=", "out"), ("state", "in", ["posted", "paid"])],
        [
            "reference",
            "total_amount",
            "amount_to_pay",
            "state",
            "currency.code",
            "company.rec_name",
        ],
    )
    seen: dict[str, SeenInvoice] = {}
    for row in rows:
        currency = str(row["currency."]["code"])
        company = str(row["company."]["rec_name"])
        invoice = SeenInvoice(
            str(row["reference"]),
            currency,
            Decimal(row["total_amount"]),
            row["state"] == "paid",
            company,
            Decimal(0) if row["state"] == "paid" else Decimal(row["amount_to_pay"]),
            str(row["state"]),
        )
        seen[invoice.number] = invoice
        expected = "GmbH" if currency == "EUR" else "Inc."
        if expected not in company:
            rec.entity_mismatches.append(
                f"ERP invoice {invoice.number} in {currency} is posted in {company}"
            )
    rec.invoices["erp"] = seen
    rec.erp_bookings = len(
        await erp.model("sale.sale").search([("state", "in", ["confirmed", "processing"])])
    )
    rec.erp_parties = len(
        await erp.model("party.identifier").search([("code", "like", f"{GLOBAL_ID_MARK}%")])
    )


def read_crm(sf: Any, rec: Reconciliation) -> None:
    rows = sf.query_all(
        "SELECT Invoice_Number__c, Amount__c, Balance__c, Status__c, Account__c, "
        "Account__r.CurrencyIsoCode FROM Invoice__c"
    )["records"]
    seen: dict[str, SeenInvoice] = {}
    for row in rows:
        currency = str((row.get("Account__r") or {}).get("CurrencyIsoCode"))
        seen[str(row["Invoice_Number__c"])] = SeenInvoice(
            str(row["Invoice_Number__c"]),
            currency,
            Decimal(str(row["Amount__c"])).quantize(Decimal("0.01")),
            row["Status__c"] == "Paid",
            str(row["Account__c"]),
            Decimal(str(row["Balance__c"] or 0)).quantize(Decimal("0.01")),
            str(row["Status__c"]),
        )
    rec.invoices["crm"] = seen
    rec.crm_active_deals = int(
        sf.query(
            "SELECT COUNT() FROM Opportunity WHERE StageName = 'Closed Won' "
            "AND Subscription_Status__c = 'Active'"
        )["totalSize"]
    )
