"""The matching and comparison core without INV/O: hand-built system snapshots and
cross-references in, drifts (kind, ids, repair) out."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from quote2cash.canonical import Money
from quote2cash.connectors.roles import LedgerEntry, LedgerKind
from quote2cash.reconcile.compare import INVOICE_CHECKS, Snapshot, compare
from quote2cash.reconcile.model import Drift, DriftKind

C, K, INV = LedgerKind.CUSTOMER, LedgerKind.CONTRACT, LedgerKind.INVOICE


class Refs:
    """Cross-references as (kind, system, id) -> {system: id}."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str, str], dict[str, str]] = {}

    def add(self, kind: str, **ids: str) -> None:
        for system, local in ids.items():
            self.links[(kind, system, local)] = ids

    def counterpart(self, kind: str, system: str, local_id: str, other: str) -> str | None:
        return self.links.get((kind, system, local_id), {}).get(other)


def usd(value: str) -> Money:
    return Money(Decimal(value), "USD")


def invoice(
    system: str, ident: str, number: str, total: str, owed: str, **kw: object
) -> LedgerEntry:
    base = LedgerEntry(
        kind=INV,
        system=system,
        id=ident,
        number=number,
        currency="USD",
        total=usd(total),
        tax=None if system == "crm" else usd("0.00"),
        balance=usd(owed),
        status="paid" if Decimal(owed) == 0 else "open",
        entity="US" if system == "erp" else None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def world() -> tuple[Snapshot, Refs]:
    """One customer, one contract, two invoices (one paid), all three systems agreeing."""
    snap = Snapshot()
    refs = Refs()
    snap.add("crm", C, [LedgerEntry(C, "crm", "001A", number="Acme", links={"hub": "CUS-1"})])
    snap.add(
        "billing",
        C,
        [LedgerEntry(C, "billing", "cus_1", number="a@acme.test", links={"hub": "CUS-1"})],
    )
    snap.add("erp", C, [LedgerEntry(C, "erp", "7", links={"hub": "CUS-1"})])
    refs.add("customer", crm="001A", billing="cus_1", erp="7")
    snap.add(
        "billing",
        K,
        [
            LedgerEntry(
                K, "billing", "sub_1", number="C-1", contract="C-1", currency="USD", status="active"
            )
        ],
    )
    snap.add(
        "crm",
        K,
        [
            LedgerEntry(
                K, "crm", "006A", number="C-1", customer="001A", contract="C-1", status="active"
            )
        ],
    )
    snap.add(
        "erp",
        K,
        [
            LedgerEntry(
                K,
                "erp",
                "3",
                number="C-1",
                contract="C-1",
                currency="USD",
                status="active",
                entity="US",
            )
        ],
    )
    refs.add("subscription", crm="006A", billing="sub_1")
    sub = {"subscription": "sub_1"}
    snap.add(
        "billing",
        INV,
        [
            invoice("billing", "in_1", "INV-1", "245.00", "0", links=sub),
            invoice("billing", "in_2", "INV-2", "98.00", "98.00", links=sub),
        ],
    )
    snap.add(
        "erp",
        INV,
        [
            invoice("erp", "11", "INV-1", "245.00", "0"),
            invoice("erp", "12", "INV-2", "98.00", "98.00"),
        ],
    )
    snap.add(
        "crm",
        INV,
        [
            invoice("crm", "a01", "INV-1", "245.00", "0"),
            invoice("crm", "a02", "INV-2", "98.00", "98.00"),
        ],
    )
    refs.add("invoice", billing="in_1", erp="11")
    refs.add("invoice", billing="in_2", erp="12")
    return snap, refs


def edit(snap: Snapshot, system: str, kind: LedgerKind, ident: str, **changes: object) -> None:
    entries = snap.entries[system][kind]
    index = next(i for i, e in enumerate(entries) if e.id == ident)
    entries[index] = replace(entries[index], **changes)  # type: ignore[arg-type]


def only(drifts: list[Drift]) -> Drift:
    assert len(drifts) == 1, [d.detail for d in drifts]
    return drifts[0]


def test_agreeing_systems_have_no_drift() -> None:
    snap, refs = world()
    assert compare(snap, refs) == []


def test_an_erp_amount_edit_is_an_amount_drift_fixed_by_a_person() -> None:
    snap, refs = world()
    edit(snap, "erp", INV, "12", total=usd("99.00"), balance=usd("99.00"))
    total = only(compare(snap, refs))
    assert total.kind is DriftKind.AMOUNT
    assert total.ids == {"billing": ("in_2",), "erp": ("12",)}
    assert total.repair.event_type is None and "ERP document 12" in total.repair.action


def test_paid_in_billing_only_is_a_status_drift_replaying_the_payment() -> None:
    snap, refs = world()
    edit(snap, "billing", INV, "in_2", balance=usd("0"), status="paid")
    drifts = compare(snap, refs)
    erp = next(d for d in drifts if "erp" in d.ids)
    assert erp.kind is DriftKind.STATUS
    assert (erp.repair.event_type, erp.repair.about) == ("billing.payment.succeeded", "in_2")
    crm = next(d for d in drifts if "crm" in d.ids)
    assert crm.kind is DriftKind.STATUS and crm.repair.event_type == "billing.payment.succeeded"


def test_paid_in_the_erp_only_needs_a_person() -> None:
    snap, refs = world()
    edit(snap, "erp", INV, "12", balance=usd("0"), status="paid")
    drift = only(compare(snap, refs))
    assert drift.kind is DriftKind.STATUS and drift.repair.event_type is None


def test_a_crm_status_change_replays_the_invoice_to_the_crm() -> None:
    snap, refs = world()
    edit(snap, "crm", INV, "a02", status="paid")
    drift = only(compare(snap, refs))
    assert (drift.kind, drift.ids["crm"]) == (DriftKind.STATUS, ("a02",))
    assert drift.repair.event_type == "billing.invoice.finalized"


def test_missing_in_erp_and_crm_replay_the_finalized_invoice() -> None:
    snap, refs = world()
    snap.entries["erp"][INV] = [e for e in snap.entries["erp"][INV] if e.id != "12"]
    snap.entries["crm"][INV] = [e for e in snap.entries["crm"][INV] if e.id != "a01"]
    drifts = compare(snap, refs)
    assert {(d.kind, d.values["missing_in"], d.key) for d in drifts} == {
        (DriftKind.MISSING, "erp", "INV-2"),
        (DriftKind.MISSING, "crm", "INV-1"),
    }
    crm = next(d for d in drifts if d.key == "INV-1")
    assert crm.repair.event_type == "billing.payment.succeeded"  # paid: its latest state
    erp = next(d for d in drifts if d.key == "INV-2")
    assert (erp.repair.event_type, erp.repair.about) == ("billing.invoice.finalized", "in_2")


def test_tax_currency_and_entity() -> None:
    snap, refs = world()
    edit(snap, "erp", INV, "11", tax=usd("19.00"))
    edit(snap, "erp", INV, "12", entity="DE")
    drifts = compare(snap, refs)
    assert {(d.kind, d.key) for d in drifts} == {
        (DriftKind.TAX, "INV-1"),
        (DriftKind.CURRENCY_OR_ENTITY, "INV-2"),
    }
    snap, refs = world()
    edit(snap, "erp", INV, "12", currency="EUR", total=Money(Decimal("98.00"), "EUR"))
    drift = only(compare(snap, refs))
    assert drift.kind is DriftKind.CURRENCY_OR_ENTITY
    assert drift.values == {"billing": "USD", "erp": "EUR"}


def test_duplicates_and_orphans() -> None:
    snap, refs = world()
    snap.add(
        "erp",
        INV,
        [
            invoice("erp", "13", "INV-2", "98.00", "98.00"),
            invoice("erp", "14", "X-9", "5.00", "5.00"),
        ],
    )
    snap.add("billing", C, [LedgerEntry(C, "billing", "cus_2", number="a@acme.test")])
    drifts = compare(snap, refs)
    dup = next(d for d in drifts if d.kind is DriftKind.DUPLICATE and d.object == "invoice")
    assert dup.ids == {"billing": ("in_2",), "erp": ("12", "13")}
    assert "keeping 12" in dup.repair.action
    orphan = next(d for d in drifts if d.kind is DriftKind.ORPHAN)
    assert orphan.ids == {"erp": ("14",)}
    customer = next(d for d in drifts if d.object == "customer")
    assert customer.kind is DriftKind.DUPLICATE and customer.ids == {"billing": ("cus_1", "cus_2")}
    assert "cus_1" in customer.repair.action
    assert len(drifts) == 3


def test_a_cut_off_run_reports_no_orphans_or_missing_bookings() -> None:
    snap, refs = world()
    snap.complete = False
    snap.entries["erp"][K] = []
    snap.add("crm", INV, [invoice("crm", "a09", "OLD-1", "1.00", "1.00")])
    assert compare(snap, refs) == []


def test_contract_status_missing_booking_and_missing_customer() -> None:
    snap, refs = world()
    edit(snap, "crm", K, "006A", status="canceled")
    snap.entries["erp"][K] = []
    snap.entries["erp"][C] = []
    drifts = compare(snap, refs)
    assert {(d.kind, d.object) for d in drifts} == {
        (DriftKind.STATUS, "contract"),
        (DriftKind.MISSING, "contract"),
        (DriftKind.MISSING, "customer"),
    }
    customer = next(d for d in drifts if d.object == "customer")
    assert (customer.repair.event_type, customer.repair.about) == (
        "crm.opportunity.closed_won",
        "006A",
    )
    booking = next(d for d in drifts if d.kind is DriftKind.MISSING and d.object == "contract")
    assert booking.repair.event_type == "billing.subscription.activated"


def test_drift_ids_are_stable_and_distinct() -> None:
    snap, refs = world()
    edit(snap, "erp", INV, "12", total=usd("99.00"))
    first = compare(snap, refs)
    again = compare(snap, refs)
    assert [d.id for d in first] == [d.id for d in again]
    edit(snap, "crm", INV, "a01", status="open", balance=usd("245.00"))
    assert len({d.id for d in compare(snap, refs)}) == len(compare(snap, refs)) == 2


@pytest.mark.parametrize("check", INVOICE_CHECKS, ids=lambda c: c.__name__)
def test_each_check_is_quiet_on_equal_documents(check) -> None:  # type: ignore[no-untyped-def]
    from quote2cash.reconcile.compare import _Pair

    entry = invoice("billing", "in_1", "INV-1", "10.00", "0")
    assert check(_Pair(entry, replace(entry, system="erp", id="1", entity="US"), "US")) is None


def test_a_different_total_is_one_drift_not_two() -> None:
    snap, refs = world()
    edit(snap, "erp", INV, "12", total=usd("99.00"), balance=usd("99.00"))
    drift = only(compare(snap, refs))
    assert (drift.kind, drift.values) == (
        DriftKind.AMOUNT,
        {"billing": "98.00 USD", "erp": "99.00 USD"},
    )


def test_a_different_amount_owed_alone_is_an_amount_drift() -> None:
    snap, refs = world()
    edit(snap, "erp", INV, "12", balance=usd("50.00"))
    drift = only(compare(snap, refs))
    assert (drift.kind, drift.values["erp"]) == (DriftKind.AMOUNT, "50.00 USD")


def test_a_credit_kept_in_billing_only_is_a_customer_balance_drift() -> None:
    """Every document agrees, but billing holds a 48.99 credit on the customer that the ERP
    never booked: what the customer owes differs (49.01 against 98.00)."""
    snap, refs = world()
    for system, customer in (("billing", "cus_1"), ("erp", "7")):
        for entry in list(snap.entries[system][INV]):
            edit(snap, system, INV, entry.id, customer=customer)
    assert compare(snap, refs) == []
    edit(snap, "billing", C, "cus_1", balance=usd("-48.99"), currency="USD")
    balance = only(compare(snap, refs))
    assert (balance.kind, balance.object) == (DriftKind.AMOUNT, "customer balance")
    assert balance.ids == {"billing": ("cus_1",), "erp": ("7",)}
    assert balance.values == {"billing": "49.01 USD", "erp": "98.00 USD"}
    edit(snap, "erp", INV, "12", total=usd("99.00"))
    assert only(compare(snap, refs)).object == "invoice"  # the invoice's drift explains it


def test_a_refund_owes_again_in_billing_as_in_the_erp_and_crm() -> None:
    """Billing refunds 60.00 of INV-1's payment: the invoice owes 60.00 again. The ERP and CRM
    show that only once they mirrored the refund; until then it is a status drift."""
    snap, refs = world()
    refund = LedgerEntry(
        LedgerKind.PAYMENT,
        "billing",
        "ch_1",
        currency="USD",
        total=usd("245.00"),
        refunded=usd("60.00"),
        links={"invoice": "in_1"},
    )
    snap.add("billing", LedgerKind.PAYMENT, [refund])
    drifts = compare(snap, refs)
    assert {(d.kind, tuple(d.ids)) for d in drifts} == {
        (DriftKind.STATUS, ("billing", "erp")),
        (DriftKind.STATUS, ("billing", "crm")),
    }
    for system, ident in (("erp", "11"), ("crm", "a01")):
        edit(snap, system, INV, ident, balance=usd("60.00"), status="open")
    assert compare(snap, refs) == []
    edit(snap, "erp", INV, "11", balance=usd("30.00"))
    assert only(compare(snap, refs)).values == {"billing": "60.00 USD", "erp": "30.00 USD"}


def test_an_open_erp_credit_note_matches_billing_s_customer_credit() -> None:
    """A 48.99 credit: billing's credit invoice is settled onto the customer's balance, the ERP
    keeps the credit note open as the customer's credit. Same money, no drift; a credit the
    ERP holds that billing does not is a customer balance drift."""
    snap, refs = world()
    for system, customer in (("billing", "cus_1"), ("erp", "7")):
        for entry in list(snap.entries[system][INV]):
            edit(snap, system, INV, entry.id, customer=customer)
    snap.add("billing", INV, [invoice("billing", "in_9", "CR-1", "-48.99", "0", customer="cus_1")])
    snap.add("erp", INV, [invoice("erp", "19", "CR-1", "-48.99", "-48.99", customer="7")])
    snap.add("crm", INV, [invoice("crm", "a09", "CR-1", "-48.99", "0")])
    refs.add("invoice", billing="in_9", erp="19")
    edit(snap, "billing", C, "cus_1", balance=usd("-48.99"), currency="USD")
    assert compare(snap, refs) == []
    edit(snap, "billing", C, "cus_1", balance=usd("0.00"))
    drift = only(compare(snap, refs))
    assert (drift.object, drift.values) == (
        "customer balance",
        {"billing": "98.00 USD", "erp": "49.01 USD"},
    )


@pytest.mark.parametrize(("second", "duplicate"), [("EUR", False), ("USD", True), (None, True)])
def test_one_billing_customer_per_currency_of_one_email_is_no_duplicate(
    second: str | None, duplicate: bool
) -> None:
    """A customer served by two legal entities has a billing customer per currency (billing
    holds one currency per customer); two of one currency, or one without, are duplicates."""
    snap, refs = world()
    edit(snap, "billing", C, "cus_1", currency="USD")
    twin = LedgerEntry(
        C, "billing", "cus_2", number="a@acme.test", currency=second, links={"hub": "CUS-2"}
    )
    snap.add("billing", C, [twin])
    refs.add("customer", billing="cus_2", erp="8")
    found = [d for d in compare(snap, refs) if d.object == "customer"]
    assert [d.kind for d in found] == ([DriftKind.DUPLICATE] if duplicate else [])
