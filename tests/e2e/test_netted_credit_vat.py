"""A downgrade credited at once nets two of billing's lines (the unused time of the old seats, the
remaining time of the new ones), each with its own VAT rounded on it; the ERP credit note posts
billing's tax to the cent, although Tryton would round the net amount's VAT a cent apart.

The customer is on a billing test clock that stands still, so the proration is of the whole
period and the amounts are exact. Read from each system directly (Stripe SDK, Tryton JSON-RPC,
simple-salesforce); in a module of its own (one hub per module's CRM).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from e2e.test_amendments import crm_subscription_for, request, stripe_invoices
from e2e.test_credits import billing_owes, erp_ledger
from quote2cash.engine.queries import failed_events
from quote2cash.masterdata.xref import Kind

NAME = "Rundungswerk GmbH"
GERMANY = {
    "BillingStreet": "Rundungsweg 3",
    "BillingCity": "Leipzig",
    "BillingPostalCode": "04109",
    "BillingCountryCode": "DE",
    "BillingCountry": "Germany",
}


def customer_on_a_still_clock(world: World, name: str, place: dict[str, str]) -> tuple[str, str]:
    """A customer signed up in billing on a test clock that does not move, and its CRM account
    carrying that billing id: every change is prorated over the whole period, to the cent.
    Returns (CRM account, billing customer)."""
    client = world.stripe()
    now = int(datetime.now(UTC).timestamp())
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": now, "name": name})
    address = {
        "line1": place["BillingStreet"],
        "city": place["BillingCity"],
        "postal_code": place["BillingPostalCode"],
        "country": place["BillingCountryCode"],
    }
    customer = str(
        client.v1.customers.create(
            params={"name": name, "test_clock": clock.id, "address": address}
        ).id
    )
    account = world.desk.account(name, currency="EUR", Billing_Customer_Id__c=customer, **place)
    return account, customer


def assert_no_failures(hub: Hub) -> None:
    failed = failed_events(hub.runtime)
    assert failed == [], [e.last_error for e in failed]


async def test_a_credit_netting_two_lines_posts_billings_per_line_vat_in_the_erp(
    world: World, hub: Hub
) -> None:
    """Issue 10 (lifecycle seed 5): the ERP refused a credit note netting several billing lines
    whose per-line VAT sums a cent off the net's VAT ([data] "the ERP computes ... tax")."""
    client, desk = world.stripe(), world.desk
    account, customer = customer_on_a_still_clock(world, NAME, GERMANY)
    opportunity = desk.deal(
        account,
        "EUR",
        [Line(sf_products(desk)["PLAT-SEAT"], 3, "45.00", discount="15")],
        name="Rundungswerk seats",
        Contract_Number__c="C-NET-0001",
    )
    await hub.settle()
    assert_no_failures(hub)
    crm_sub = crm_subscription_for(desk, opportunity)
    billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    [first] = stripe_invoices(world, billing_id)
    assert (first.total, first.status) == (13655, "open")  # 3 x 38.25 and VAT 21.80

    # One seat fewer, invoiced at once: billing credits 3 seats' unused time and charges 2 seats'
    # remaining time, VAT rounded on each line (-21.8025 -> -21.80, 14.535 -> 14.54).
    request(desk, crm_sub, 1, previous=3, new=2)
    await hub.settle()
    assert_no_failures(hub)
    credit = stripe_invoices(world, billing_id)[1]
    lines = sorted((line.amount, line.taxes[0].amount) for line in credit.lines.data)
    assert lines == [(-11475, -2180), (7650, 1454)]
    [vat] = credit.total_taxes
    assert (credit.total_excluding_tax, vat.amount, credit.total) == (-3825, -726, -4551)
    assert round(Decimal("-38.25") * Decimal("0.19"), 2) == Decimal("-7.27")  # on the net

    # ERP: one credit note equal to billing's to the cent, its VAT billing's per-line sum.
    gid = hub.deps.xref.global_id_for(Kind.INVOICE, "billing", credit.id)
    erp_id = hub.deps.xref.local_id(gid, "erp") if gid else None
    assert erp_id is not None, "the credit note never reached the ERP"
    async with world.erp_client() as erp:
        [note] = await erp.model("account.invoice").read(
            [int(erp_id)], ["total_amount", "untaxed_amount", "tax_amount", "state"]
        )
        taxes = await erp.model("account.invoice.tax").search_read(
            [("invoice", "=", int(erp_id))], ["tax.name", "base", "amount"]
        )
    assert (note["total_amount"], note["untaxed_amount"], note["tax_amount"]) == (
        Decimal("-45.51"),
        Decimal("-38.25"),
        Decimal("-7.26"),
    )
    assert note["state"] in ("posted", "paid")
    assert [(t["tax."]["name"], t["base"], t["amount"]) for t in taxes] == [
        ("DE VAT 19%", Decimal("-38.25"), Decimal("-7.26"))
    ]
    # What the customer owes agrees: the open first invoice net of the credit balance.
    assert client.v1.customers.retrieve(customer).balance == -4551
    ledger = await erp_ledger(world, NAME)
    assert ledger["receivable"] == billing_owes(world, customer) == Decimal("91.04")

    # CRM: the credit note at billing's total.
    [crm_credit] = desk.invoices(str(credit.number))
    assert Decimal(str(crm_credit["Amount__c"])) == Decimal("-45.51")
