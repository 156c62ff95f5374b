"""The demo's end-of-run view of the product's three-way reconciliation (``q2c reconcile``):
per-currency totals and counts from what the reconciliation read from each system, and its
drifts. Nothing here reads a system itself."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from quote2cash.connectors.roles import LedgerEntry, LedgerKind
from quote2cash.reconcile.model import Report

SYSTEMS = ("billing", "erp", "crm")
_SHOWN_STATE = {"erp": {"open": "posted", "paid": "paid"}}


@dataclass(frozen=True)
class SeenInvoice:
    number: str
    currency: str
    total: Decimal
    paid: bool
    balance: Decimal
    """What the customer still owes on it (refunds owed again included)."""
    status: str = ""
    """The system's own status word (Stripe ``paid``, Tryton ``posted``, CRM ``Refunded``)."""


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


def _seen(entry: LedgerEntry) -> SeenInvoice:
    assert entry.total is not None and entry.balance is not None
    return SeenInvoice(
        entry.number or entry.id,
        entry.currency or entry.total.currency,
        entry.total.amount,
        entry.status == "paid",
        entry.balance.amount,
        entry.state or _SHOWN_STATE.get(entry.system, {}).get(entry.status, entry.status),
    )


@dataclass
class Reconciliation:
    """The product's report, with the counts and totals the demo's summary shows."""

    report: Report
    invoices: dict[str, dict[str, SeenInvoice]] = field(default_factory=dict)
    """system -> invoice number -> what that system shows."""
    subscriptions: int = 0
    erp_bookings: int = 0
    crm_active_deals: int = 0
    erp_parties: int = 0
    billing_customers: int = 0

    @classmethod
    def of(cls, report: Report) -> Reconciliation:
        snap = report.snapshot
        assert snap is not None, "the report keeps what it read"
        contracts = {e.contract for e in snap.of("billing", LedgerKind.CONTRACT) if e.contract}
        return cls(
            report,
            {s: {i.number: i for i in map(_seen, snap.of(s, LedgerKind.INVOICE))} for s in SYSTEMS},
            subscriptions=sum(
                e.status in ("active", "past_due") for e in snap.of("billing", LedgerKind.CONTRACT)
            ),
            erp_bookings=sum(
                e.number in contracts and e.status == "active"
                for e in snap.of("erp", LedgerKind.CONTRACT)
            ),
            crm_active_deals=sum(e.status == "active" for e in snap.of("crm", LedgerKind.CONTRACT)),
            erp_parties=len(snap.of("erp", LedgerKind.CUSTOMER)),
            billing_customers=len(snap.of("billing", LedgerKind.CUSTOMER)),
        )

    def totals(self) -> dict[str, dict[str, Totals]]:
        """currency -> system -> totals."""
        out: dict[str, dict[str, Totals]] = defaultdict(lambda: {s: Totals() for s in SYSTEMS})
        for system, seen in self.invoices.items():
            for invoice in seen.values():
                out[invoice.currency][system].add(invoice)
        return dict(out)

    def differences(self) -> list[str]:
        """Every drift the reconciliation found, with its id and proposed repair."""
        return [
            f"{d.id} {d.kind.value} {d.object} {d.key}: {d.detail} -> {d.repair.describe()}"
            for d in self.report.drifts
        ]

    @property
    def reconciled(self) -> bool:
        return self.report.clean and bool(self.invoices.get("billing"))
