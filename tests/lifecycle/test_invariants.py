"""The invariants' comparison logic on hand-made views: agreeing systems give no divergence,
and each kind of disagreement is named (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from lifecycle.invariants import (
    BillingInvoice,
    BillingSubscription,
    BillingView,
    CrmInvoice,
    CrmSubscription,
    CrmView,
    ErpInvoice,
    ErpView,
    all_divergences,
    bookings_match,
    crm_matches,
    documents_seen,
    duplicates,
    expected_crm_status,
    invoices_match,
    item_period_charge,
    owed_match,
)

D = Decimal
PERIOD = (date(2026, 12, 6), date(2027, 1, 5))


def agreeing() -> tuple[BillingView, ErpView, CrmView]:
    """One paid first invoice, one open proration invoice, a credit note held as balance."""
    billing = BillingView(
        customers=["cus_1"],
        balance=D("-20.00"),
        currency="EUR",
        subscriptions=[BillingSubscription("sub_1", "active", 7, D("315.00"))],
        invoices=[
            BillingInvoice("in_1", "INV-1", "paid", "EUR", D("225.00"), D(0), D(0), D("225.00"),
                           D(0), PERIOD),
            BillingInvoice("in_2", "INV-2", "open", "EUR", D("90.00"), D(0), D("90.00"), D(0),
                           D(0), PERIOD),
            BillingInvoice("in_3", "INV-3", "paid", "EUR", D("-20.00"), D(0), D(0), D(0), D(0),
                           PERIOD),
        ],
    )  # fmt: skip
    erp = ErpView(
        parties=1,
        invoices=[
            ErpInvoice("INV-1", "paid", "EUR", "DE", D("225.00"), D(0), D(0), PERIOD),
            ErpInvoice("INV-2", "open", "EUR", "DE", D("90.00"), D(0), D("90.00"), PERIOD),
            ErpInvoice("INV-3", "open", "EUR", "DE", D("-20.00"), D(0), D("-20.00"), PERIOD),
        ],
        sales={"C-1": D("225.00"), "C-1/A1": D("90.00")},
        sale_references=["C-1", "C-1/A1"],
    )
    crm = CrmView(
        accounts=1,
        invoices=[
            CrmInvoice("INV-1", "Paid", D("225.00"), D(0)),
            CrmInvoice("INV-2", "Open", D("90.00"), D("90.00")),
            CrmInvoice("INV-3", "Paid", D("-20.00"), D(0)),
        ],
        subscriptions=[CrmSubscription("sub_1", "Active", 7)],
        opportunity_status="Active",
    )
    return billing, erp, crm


def test_agreeing_systems_show_no_divergence() -> None:
    billing, erp, crm = agreeing()
    assert all_divergences(billing, erp, crm, entity="DE", booked=True) == []


def test_an_erp_total_off_by_a_cent_is_found() -> None:
    billing, erp, _ = agreeing()
    erp.invoices[1] = replace(erp.invoices[1], total=D("90.01"), to_pay=D("90.01"))
    assert invoices_match(billing, erp, "DE") == ["invoice INV-2: total billing 90.00 != ERP 90.01"]
    assert owed_match(billing, erp) == [
        "customer owes 70.00 in billing but 70.01 in the ERP receivable"
    ]


def test_tax_currency_entity_and_period_differences_are_each_named() -> None:
    billing, erp, _ = agreeing()
    erp.invoices[0] = replace(
        erp.invoices[0],
        tax=D("42.75"),
        currency="USD",
        entity="US",
        period=(date(2026, 12, 6), date(2027, 1, 6)),
    )
    found = invoices_match(billing, erp, "DE")
    assert len(found) == 4
    assert any("tax billing 0 != ERP 42.75" in f for f in found)
    assert any("currency billing EUR != ERP USD" in f for f in found)
    assert any("posted by entity US, the contract's is DE" in f for f in found)
    assert any("service period" in f for f in found)


def test_a_missing_service_period_counts_only_where_the_erp_keeps_periods() -> None:
    billing, erp, _ = agreeing()
    erp.invoices[1] = replace(erp.invoices[1], period=None)
    assert invoices_match(billing, erp, "DE") == [
        "invoice INV-2: the ERP document has no service period"
    ]
    erp.keeps_periods = False
    assert invoices_match(billing, erp, "DE") == []


def test_only_open_documents_are_receivable() -> None:
    billing, erp, _ = agreeing()
    erp.invoices[1] = replace(erp.invoices[1], state="paid")
    assert owed_match(billing, erp) == [
        "customer owes 70.00 in billing but -20.00 in the ERP receivable"
    ]


def test_missing_and_orphan_documents_are_found() -> None:
    billing, erp, crm = agreeing()
    erp.invoices.pop(1)
    crm.invoices.append(CrmInvoice("INV-9", "Open", D("1.00"), D("1.00")))
    assert invoices_match(billing, erp, "DE") == [
        "billing invoice INV-2 (90.00) has no ERP document"
    ]
    assert "CRM invoice INV-9 has no billing invoice" in crm_matches(billing, crm)


def test_duplicates_anywhere_are_found() -> None:
    billing, erp, crm = agreeing()
    billing.customers.append("cus_2")
    erp.sale_references.append("C-1")
    crm.invoices.append(crm.invoices[0])
    found = duplicates(billing, erp, crm, booked=True)
    assert "billing has 2 customers, expected 1" in found
    assert "ERP sale C-1 appears 2 times" in found
    assert "CRM Invoice__c INV-1 appears 2 times" in found


def test_a_deal_never_booked_must_leave_erp_and_subscriptions_empty() -> None:
    billing, erp, crm = agreeing()
    found = duplicates(billing, erp, crm, booked=False)
    assert found == [
        "ERP has 1 parties, expected 0",
        "billing has 1 subscriptions, expected 0",
        "CRM has 1 Subscription__c, expected 0",
    ]


def test_crm_status_balance_and_quantity_follow_billing() -> None:
    billing, _, crm = agreeing()
    crm.invoices[0] = replace(crm.invoices[0], status="Open", balance=D("225.00"))
    crm.subscriptions[0] = replace(crm.subscriptions[0], quantity=5, status="Past Due")
    found = crm_matches(billing, crm)
    assert found == [
        "CRM invoice INV-1: balance 225.00 != billing's 0",
        "CRM invoice INV-1: status Open but billing says ['Paid']",
        "subscription sub_1: CRM Past Due, billing active (Active)",
        "subscription sub_1: CRM quantity 5, billing 7",
    ]


def test_refunds_are_owed_again_and_named_in_the_crm_status() -> None:
    paid = BillingInvoice("in_1", "INV-1", "paid", "USD", D("100.00"), D(0), D(0), D("100.00"),
                          D("25.00"), None)  # fmt: skip
    assert expected_crm_status(paid) == {"Partially Refunded"}
    assert expected_crm_status(replace(paid, refunded=D("100.00"))) == {"Refunded"}
    assert expected_crm_status(replace(paid, status="open", refunded=D(0))) == {"Open"}
    overdue = replace(paid, status="open", refunded=D(0), past_due=True)
    assert expected_crm_status(overdue) == {"Open", "Overdue"}
    view = BillingView(customers=["c"], invoices=[paid])
    assert view.owed() == D("25.00")


def test_bookings_must_add_up_to_what_billing_charges_a_period() -> None:
    billing, erp, _ = agreeing()
    assert bookings_match(billing, erp) == []
    erp.sales["C-1/A2"] = D("-45.00")
    [found] = bookings_match(billing, erp)
    assert "ERP bookings add up to 270.00" in found and "billing charges 315.00" in found
    billing.subscriptions[0] = replace(billing.subscriptions[0], status="canceled")
    assert bookings_match(billing, erp) == []


@pytest.mark.parametrize("status", ["Canceled", None])
def test_a_canceled_subscription_shows_on_the_opportunity(status: str | None) -> None:
    billing, _, crm = agreeing()
    billing.subscriptions[0] = replace(billing.subscriptions[0], status="canceled")
    crm.subscriptions[0] = replace(crm.subscriptions[0], status="Canceled")
    crm.opportunity_status = status
    found = crm_matches(billing, crm)
    assert found == ([] if status else ["opportunity shows None, billing canceled"])


def test_a_booked_deal_with_nothing_to_compare_is_a_divergence() -> None:
    empty = all_divergences(BillingView(customers=["c"]), ErpView(parties=1), CrmView(accounts=1),
                            entity="US", booked=True)  # fmt: skip
    assert empty[:4] == [
        "a booked deal shows no billing invoice",
        "a booked deal shows no ERP invoice",
        "a booked deal shows no ERP sale",
        "a booked deal shows no CRM Invoice__c",
    ]
    assert documents_seen(BillingView(), ErpView(), CrmView(), booked=False) == []


def test_one_time_items_are_booked_once_not_every_period() -> None:
    billing, erp, _ = agreeing()
    erp.sales["C-1"] += D("1500.00")
    [found] = bookings_match(billing, erp)
    assert "ERP bookings add up to 1815.00" in found
    erp.one_time = D("1500.00")
    assert bookings_match(billing, erp) == []


@pytest.mark.parametrize(
    ("gross", "percents", "charged"),
    [
        (58500, ["12.5"], "511.87"),  # 73.125 off: billing rounds the discount half up
        (4900, ["12.5"], "42.87"),  # 6.125 off
        (63700, ["12.5"], "557.37"),  # 79.625 off (USD 13 x 49.00)
        (58500, ["10"], "526.50"),  # exact
        (10000, ["10", "12.5"], "78.75"),  # stacked: 10.00 off, then 11.25 off 90.00
        (999, ["33.33"], "6.66"),  # 3.329667 off -> 3.33
        (58500, [], "585.00"),
    ],
)
def test_a_period_charge_rounds_each_discount_half_up_as_billing_does(
    gross: int, percents: list[str], charged: str
) -> None:
    assert item_period_charge(gross, [D(p) for p in percents], "EUR") == D(charged)
