"""Credits and one-time charges, end to end, checked by reading each system directly
(simple-salesforce, the stripe SDK, Tryton over JSON-RPC).

- A seat reduction before the customer paid leaves a credit in billing's customer balance; the
  ERP holds it as the customer's open credit (not taken off the unpaid invoice), the customer's
  card payment of the whole invoice is applied, and a later invoice smaller than the credit is
  settled wholly from it: no cash in the ERP, the credit consumed instead. At every step what
  the customer owes is the same in billing (open invoices net of the balance) and in the ERP
  receivable.
- A deal with seats and the one-time ONBOARD line: billing charges the one-off once, on the first
  invoice (``add_invoice_items``), the ERP books and invoices it once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from contract.crm.salesforce_harness import Line
from e2e.conftest import World, sf_products
from e2e.test_amendments import (
    LifecycleHub,
    crm_subscription_for,
    open_lifecycle_hub,
    request,
    stripe_invoices,
    won_deal,
)
from e2e.test_bundles import sale_lines
from quote2cash.engine.queries import failed_events

CENT = Decimal("0.01")
FIRST = Decimal("267.75")  # 5 seats x 45.00 EUR plus 19 % German VAT


@pytest.fixture
async def lifecycle_hub(world: World, tmp_path: Path) -> AsyncIterator[LifecycleHub]:
    async with open_lifecycle_hub(world, tmp_path) as hub:
        yield hub


def assert_no_failures(hub: LifecycleHub) -> None:
    failed = failed_events(hub.runtime)
    assert failed == [], [e.last_error for e in failed]


def billing_owes(world: World, customer_id: str) -> Decimal:
    """Billing's view: the customer's open invoices' remaining amounts plus their balance."""
    client = world.stripe()
    open_invoices = client.v1.invoices.list(params={"customer": customer_id, "status": "open"})
    remaining = sum(i.amount_remaining for i in open_invoices.data)
    return Decimal(remaining + client.v1.customers.retrieve(customer_id).balance) / 100


async def erp_ledger(world: World, party_name: str) -> dict[str, Any]:
    """The ERP's view of one customer: receivable balance, and each customer invoice or credit
    note by total with what it still owes."""
    async with world.erp_client() as erp:
        [party] = await erp.model("party.party").search_read([("name", "=", party_name)], ["id"])
        documents = await erp.model("account.invoice").search_read(
            [("party", "=", party["id"]), ("type", "=", "out")],
            ["total_amount", "amount_to_pay", "state", "account", "payment_lines"],
            order=[("id", "ASC")],
        )
        accounts = sorted({int(d["account"]) for d in documents})
        lines = await erp.model("account.move.line").search_read(
            [
                ("party", "=", party["id"]),
                ("account", "in", accounts),
                ("move.state", "=", "posted"),
            ],
            ["debit", "credit", "move.journal.type"],
        )
    receivable = sum((Decimal(li["debit"]) - Decimal(li["credit"]) for li in lines), Decimal(0))
    cash = [li for li in lines if li["move."]["journal."]["type"] == "cash"]
    return {"receivable": receivable, "documents": documents, "cash_lines": cash}


async def test_a_downgrade_credit_before_payment_is_the_customers_and_the_payment_fits(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk, client = lifecycle_hub, world.desk, world.stripe()
    name = "Gutschrift Analytics GmbH"
    _, billing_id, crm_sub = await won_deal(world, hub, name, "C-CR-0001")
    await hub.settle()
    [first] = stripe_invoices(world, billing_id)
    customer = str(first.customer)
    assert (first.total, first.status) == (26775, "open")

    # Two seats fewer, invoiced at once, before the customer paid: a credit to the balance.
    request(desk, crm_sub, 1, previous=5, new=3)
    await hub.settle()
    assert_no_failures(hub)
    credit_bill = stripe_invoices(world, billing_id)[1]
    credit = Decimal(credit_bill.total) / 100
    assert Decimal("-107.10") <= credit < Decimal("-105.91")  # two seats, prorated, VAT
    assert client.v1.customers.retrieve(customer).balance == credit_bill.total
    assert client.v1.invoices.retrieve(first.id).amount_remaining == 26775
    ledger = await erp_ledger(world, name)
    by_total = {d["total_amount"]: d for d in ledger["documents"]}
    assert by_total[credit]["amount_to_pay"] == credit  # the customer's open credit
    assert by_total[FIRST]["amount_to_pay"] == FIRST
    assert ledger["receivable"] == billing_owes(world, customer) == FIRST + credit
    [crm_first] = desk.invoices(str(first.number))
    assert Decimal(str(crm_first["Balance__c"])) == FIRST

    # The customer pays the whole first invoice by card: the ERP takes the payment.
    client.v1.invoices.pay(first.id, params={"payment_method": "pm_card_visa"})
    await hub.settle()
    assert_no_failures(hub)
    ledger = await erp_ledger(world, name)
    by_total = {d["total_amount"]: d for d in ledger["documents"]}
    assert by_total[FIRST]["state"] == "paid"
    assert by_total[credit]["amount_to_pay"] == credit
    assert ledger["receivable"] == billing_owes(world, customer) == credit
    [crm_first] = desk.invoices(str(first.number))
    assert crm_first["Status__c"] == "Paid" and Decimal(str(crm_first["Balance__c"])) == 0


async def test_an_invoice_smaller_than_the_credit_is_settled_from_it_with_no_cash(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk, client = lifecycle_hub, world.desk, world.stripe()
    name = "Guthaben Systems GmbH"
    opportunity, billing_id, crm_sub = await won_deal(world, hub, name, "C-CR-0002")
    await hub.settle()
    [first] = stripe_invoices(world, billing_id)
    customer = str(first.customer)
    client.v1.invoices.pay(first.id, params={"payment_method": "pm_card_visa"})
    request(desk, crm_sub, 1, previous=5, new=3)
    await hub.settle()
    assert_no_failures(hub)
    credit_bill = stripe_invoices(world, billing_id)[1]
    assert billing_owes(world, customer) == Decimal(credit_bill.total) / 100

    # One seat more, invoiced at once: smaller than the credit, so settled wholly from it.
    request(desk, crm_sub, 2, previous=3, new=4)
    await hub.settle()
    assert_no_failures(hub)
    settled = stripe_invoices(world, billing_id)[2]
    assert 0 < settled.total < -credit_bill.total
    assert (settled.amount_paid, settled.status) == (0, "paid")
    assert settled.starting_balance == credit_bill.total
    assert settled.ending_balance == credit_bill.total + settled.total
    ledger = await erp_ledger(world, name)
    by_total = {d["total_amount"]: d for d in ledger["documents"]}
    upgrade = by_total[Decimal(settled.total) / 100]
    assert (upgrade["state"], upgrade["amount_to_pay"]) == ("paid", Decimal(0))
    credit = by_total[Decimal(credit_bill.total) / 100]
    assert credit["amount_to_pay"] == Decimal(settled.ending_balance) / 100
    # Cash in the ERP is the card payment of the first invoice only.
    assert sum(Decimal(li["credit"]) for li in ledger["cash_lines"]) == FIRST
    owed = billing_owes(world, customer)
    assert owed == Decimal(settled.ending_balance) / 100
    assert ledger["receivable"] == owed
    [crm_upgrade] = desk.invoices(str(settled.number))
    assert crm_upgrade["Status__c"] == "Paid" and Decimal(str(crm_upgrade["Balance__c"])) == 0
    assert desk.sf.Opportunity.get(opportunity)["Subscription_Status__c"] == "Active"


async def test_a_one_time_line_is_billed_once_on_the_first_invoice_and_booked_once(
    world: World, lifecycle_hub: LifecycleHub
) -> None:
    hub, desk, client = lifecycle_hub, world.desk, world.stripe()
    name = "Onboarding Needed Inc."
    products = sf_products(desk)
    account = desk.account(
        name,
        currency="USD",
        BillingStreet="1 Market St",
        BillingCity="San Francisco",
        BillingState="CA",
        BillingPostalCode="94105",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    opportunity = desk.deal(
        account,
        "USD",
        [Line(products["PLAT-SEAT"], 5, "49.00"), Line(products["ONBOARD"], 1, "1500.00")],
        name="Platform with onboarding",
        Contract_Number__c="C-OT-0001",
    )
    await hub.settle()
    assert_no_failures(hub)
    crm_subscription_for(desk, opportunity)

    # Billing: the subscription renews the seats only; its first invoice also charges the
    # one-off, as an invoice item.
    billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    sub = client.v1.subscriptions.retrieve(billing_id)
    assert [i["price"]["lookup_key"] for i in sub["items"]["data"]] == ["plat_seat_monthly_usd"]
    [first] = stripe_invoices(world, billing_id)
    assert first.total == 5 * 4900 + 150000
    kinds = sorted(line.parent.type for line in first.lines.data)
    assert kinds == ["invoice_item_details", "subscription_item_details"]

    # ERP: booked once with its line, invoiced once to the cent, the one-off line deferred over
    # the first period only.
    assert await sale_lines(world, "C-OT-0001") == [
        ("PLAT-SEAT", 5, Decimal("245.00")),
        ("ONBOARD", 1, Decimal("1500.00")),
    ]
    async with world.erp_client() as erp:
        [invoice] = await erp.model("account.invoice").search_read(
            [("reference", "=", first.number)], ["total_amount", "state"]
        )
        lines = await erp.model("account.invoice.line").search_read(
            [("invoice", "=", invoice["id"])],
            ["product.code", "amount", "defer_from", "defer_to"],
        )
    assert invoice["total_amount"] == Decimal("1745.00")
    by_code = {li["product."]["code"]: li for li in lines}
    onboard, seats = by_code["ONBOARD"], by_code["PLAT-SEAT"]
    assert (onboard["amount"], seats["amount"]) == (Decimal("1500.00"), Decimal("245.00"))
    assert (onboard["defer_from"], onboard["defer_to"]) == (seats["defer_from"], seats["defer_to"])

    # CRM: the invoice at its full amount; the subscription shows the seats.
    [crm_invoice] = desk.invoices(str(first.number))
    assert Decimal(str(crm_invoice["Amount__c"])) == Decimal("1745.00")
    [crm_sub] = desk.sf.query(
        f"SELECT Quantity__c FROM Subscription__c WHERE Billing_Subscription_Id__c = '{billing_id}'"
    )["records"]
    assert crm_sub["Quantity__c"] == 5
