"""What the flows tell the CRM is business terms (``connectors.roles.CrmStatus``); the
Salesforce connector's mapping alone turns each into the record and fields Salesforce keeps,
exactly as the flows wrote them before (the e2e tests and the emulator check the effect)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from quote2cash.canonical import Money, SubscriptionStatus, TaxIdValue
from quote2cash.connectors.roles import (
    AccountFinancials,
    AmendmentOutcome,
    ContractState,
    CrmStatus,
    CustomerLinks,
    DealActivated,
    DealCanceled,
    DealInvoiceStanding,
    DealSubscribed,
    InvoiceStanding,
    InvoiceState,
)
from quote2cash.connectors.salesforce.mapping import SObjectUpdate, status_record

FLOWS = Path(__file__).parents[3] / "src" / "quote2cash" / "flows"
OPP, ACCOUNT = "006000000000001AAA", "001000000000001AAA"
EUR = "EUR"

CASES: list[tuple[CrmStatus, SObjectUpdate]] = [
    (
        AccountFinancials(ACCOUNT, legal_entity="DE,US", credit_limit=Money("25000.00", EUR)),
        SObjectUpdate(
            "Account",
            "Id",
            ACCOUNT,
            {"Legal_Entity__c": "DE,US", "Credit_Limit__c": Decimal("25000.00")},
        ),
    ),
    (
        CustomerLinks(ACCOUNT, "CUST-1", "P-7", "cus_1", "ACME-FR"),
        SObjectUpdate(
            "Account",
            "Id",
            ACCOUNT,
            {
                "Hub_Global_Id__c": "CUST-1",
                "ERP_Customer_Number__c": "P-7",
                "Billing_Customer_Id__c": "cus_1",
                "Legal_Entity__c": "ACME-FR",
            },
        ),
    ),
    (
        DealSubscribed(OPP, "sub_1", SubscriptionStatus.INCOMPLETE_EXPIRED, "deal-1"),
        SObjectUpdate(
            "Opportunity",
            "Id",
            OPP,
            {
                "Subscription_Id__c": "sub_1",
                "Subscription_Status__c": "Pending",
                "Hub_Correlation_Id__c": "deal-1",
            },
        ),
    ),
    (
        DealSubscribed(OPP, "sub_1", SubscriptionStatus.UNPAID, "deal-1"),
        SObjectUpdate(
            "Opportunity",
            "Id",
            OPP,
            {
                "Subscription_Id__c": "sub_1",
                "Subscription_Status__c": "Past Due",
                "Hub_Correlation_Id__c": "deal-1",
            },
        ),
    ),
    (
        DealActivated(OPP, "sub_1", date(2026, 12, 1)),
        SObjectUpdate(
            "Opportunity",
            "Id",
            OPP,
            {
                "Subscription_Id__c": "sub_1",
                "Subscription_Status__c": "Active",
                "Billing_Start_Date__c": "2026-12-01",
            },
        ),
    ),
    (
        DealActivated(OPP, "sub_1", None),
        SObjectUpdate(
            "Opportunity",
            "Id",
            OPP,
            {
                "Subscription_Id__c": "sub_1",
                "Subscription_Status__c": "Active",
                "Billing_Start_Date__c": None,
            },
        ),
    ),
    (
        DealCanceled(OPP),
        SObjectUpdate("Opportunity", "Id", OPP, {"Subscription_Status__c": "Canceled"}),
    ),
    (
        DealInvoiceStanding(OPP, InvoiceStanding.PARTIALLY_REFUNDED),
        SObjectUpdate("Opportunity", "Id", OPP, {"Invoice_Status__c": "Partially Refunded"}),
    ),
    (
        InvoiceState(
            "INV-1",
            ACCOUNT,
            Money("120.00", EUR),
            Money("20.00", EUR),
            InvoiceStanding.OVERDUE,
            date(2027, 1, 31),
        ),
        SObjectUpdate(
            "Invoice__c",
            "Invoice_Number__c",
            "INV-1",
            {
                "Account__c": ACCOUNT,
                "Amount__c": Decimal("120.00"),
                "Balance__c": Decimal("20.00"),
                "Status__c": "Overdue",
                "Due_Date__c": "2027-01-31",
            },
        ),
    ),
    (
        ContractState(
            "sub_1",
            ACCOUNT,
            OPP,
            SubscriptionStatus.INCOMPLETE_EXPIRED,
            12,
            date(2026, 12, 1),
            date(2027, 11, 30),
        ),
        SObjectUpdate(
            "Subscription__c",
            "Billing_Subscription_Id__c",
            "sub_1",
            {
                "Account__c": ACCOUNT,
                "Opportunity__c": OPP,
                "Status__c": "Expired",
                "Quantity__c": 12,
                "Start_Date__c": "2026-12-01",
                "End_Date__c": "2027-11-30",
            },
        ),
    ),
    (
        AmendmentOutcome("a03000000000001AAA", applied=True, previous_seats=10),
        SObjectUpdate(
            "Seat_Change__c",
            "Id",
            "a03000000000001AAA",
            {"Status__c": "Applied", "Previous_Quantity__c": 10},
        ),
    ),
    (
        AmendmentOutcome("a03000000000001AAA", applied=True),
        SObjectUpdate("Seat_Change__c", "Id", "a03000000000001AAA", {"Status__c": "Applied"}),
    ),
    (
        AmendmentOutcome("a03000000000001AAA", applied=False, previous_seats=10),
        SObjectUpdate("Seat_Change__c", "Id", "a03000000000001AAA", {"Status__c": "Failed"}),
    ),
]


@pytest.mark.parametrize(("status", "record"), CASES, ids=lambda c: type(c).__name__)
def test_each_business_status_is_one_salesforce_record(
    status: CrmStatus, record: SObjectUpdate
) -> None:
    assert status_record(status, amendment_object="Seat_Change__c") == record


TAX_FIELDS = [("eu_vat", "VAT_Number__c"), ("us_ein", "EIN__c")]
VAT = TaxIdValue(type="eu_vat", value="DE811569869")
EIN = TaxIdValue(type="us_ein", value="04-2103594")


@pytest.mark.parametrize(
    ("tax_ids", "fields"),
    [
        ((VAT, EIN), {"VAT_Number__c": "DE811569869", "EIN__c": "04-2103594"}),
        ((VAT,), {"VAT_Number__c": "DE811569869"}),
        ((EIN,), {"VAT_Number__c": None, "EIN__c": "04-2103594"}),
        ((TaxIdValue(type="gb_vat", value="GB980780684"),), {"VAT_Number__c": "GB980780684"}),
        ((), {"VAT_Number__c": None}),
        (None, {}),
    ],
)
def test_erp_owned_tax_registrations_go_to_their_fields(
    tax_ids: tuple[TaxIdValue, ...] | None, fields: dict[str, object]
) -> None:
    """The main field is cleared when the ERP has none of its type; a further field (which an
    org may lack) is only ever written."""
    status = AccountFinancials(ACCOUNT, tax_ids=tax_ids)
    record = status_record(status, amendment_object="X__c", tax_id_fields=TAX_FIELDS)
    assert record == SObjectUpdate("Account", "Id", ACCOUNT, fields)


def test_every_status_kind_has_a_case() -> None:
    kinds = {type(status) for status, _ in CASES}
    assert kinds == set(CrmStatus.__args__)  # type: ignore[attr-defined]


def test_every_invoice_standing_has_a_picklist_value() -> None:
    shown = {
        status_record(DealInvoiceStanding(OPP, s), amendment_object="x__c").fields[
            "Invoice_Status__c"
        ]
        for s in InvoiceStanding
    }
    assert len(shown) == len(InvoiceStanding)


def test_flows_name_no_salesforce_field_or_object() -> None:
    named = [
        f"{path.name}:{n}"
        for path in sorted(FLOWS.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "__c" in line
    ]
    assert named == []
