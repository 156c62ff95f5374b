"""An invoice settled at once from the customer's credit balance (a downgrade's credit; billing
collects no cash, ``amount_paid`` 0) shows Paid in the CRM although the hub hears its no-cash
payment before its finalization: the invoice sync, coming second, must not write Open over it.

The customer is on a billing test clock that stands still (whole-period prorations, exact
amounts). Read from each system directly (Stripe SDK, Tryton JSON-RPC, simple-salesforce); in a
module of its own (one hub per module's CRM).
"""

from __future__ import annotations

from decimal import Decimal

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from e2e.test_amendments import crm_subscription_for, request, stripe_invoices
from e2e.test_arrival_order import payment_first
from e2e.test_credits import billing_owes, erp_ledger
from e2e.test_netted_credit_vat import assert_no_failures, customer_on_a_still_clock
from quote2cash.engine.cursors import read_cursor
from quote2cash.engine.queries import list_events
from quote2cash.flows.intake import billing_event, poll_amendments
from quote2cash.masterdata.xref import Kind

NAME = "Guthabenzahlung AG"
CONTRACT = "C-SET-0001"
GERMANY = {
    "BillingStreet": "Kreditweg 7",
    "BillingCity": "Bremen",
    "BillingPostalCode": "28195",
    "BillingCountryCode": "DE",
    "BillingCountry": "Germany",
}


async def test_an_invoice_settled_from_credit_is_paid_in_the_crm_when_its_payment_came_first(
    world: World, hub: Hub
) -> None:
    """Issue 10 (lifecycle seed 13): the invoice sync wrote Open over the Paid that the no-cash
    payment, heard first, had shown in the CRM (Invoice__c and Opportunity stayed Open)."""
    client, desk = world.stripe(), world.desk
    account, customer = customer_on_a_still_clock(world, NAME, GERMANY)
    opportunity = desk.deal(
        account,
        "EUR",
        [Line(sf_products(desk)["PLAT-SEAT"], 5, "45.00")],
        name="Guthabenzahlung seats",
        Contract_Number__c=CONTRACT,
    )
    await hub.settle()
    assert_no_failures(hub)
    crm_sub = crm_subscription_for(desk, opportunity)
    billing_id = str(desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    [first] = stripe_invoices(world, billing_id)
    assert first.total == 26775  # 5 x 45.00 and 19 % VAT

    # Paid by card, then two seats fewer invoiced at once: a credit of 107.10 to the balance.
    client.v1.invoices.pay(first.id, params={"payment_method": "pm_card_visa"})
    request(desk, crm_sub, 1, previous=5, new=3)
    await hub.settle()
    assert_no_failures(hub)
    credit = stripe_invoices(world, billing_id)[1]
    assert credit.total == -10710
    assert client.v1.customers.retrieve(customer).balance == -10710

    # One seat more, invoiced at once: 53.55, settled wholly from the balance, no cash.
    request(desk, crm_sub, 2, previous=3, new=4)
    assert hub.systems.crm is not None and hub.systems.billing is not None
    assert await poll_amendments(hub.runtime, hub.systems.crm, hub.deps.xref) == 1
    await hub.worker.drain()
    settled = stripe_invoices(world, billing_id)[2]
    assert (settled.total, settled.amount_paid, settled.status) == (5355, 0, "paid")
    assert client.v1.customers.retrieve(customer).balance == -5355

    # The hub hears its payment before its finalization (in an earlier poll).
    cursor = read_cursor(hub.runtime, "billing")
    page = await hub.systems.billing.list_events(cursor=cursor, limit=100)
    heard = payment_first(page.items, settled.id)
    cut = next(i for i, be in enumerate(heard) if be.type == "billing.payment.succeeded") + 1
    hub.runtime.log.append_many([billing_event(hub.runtime, be) for be in heard[:cut]])
    await hub.worker.drain()
    [crm_settled] = desk.invoices(str(settled.number))
    assert crm_settled["Status__c"] == "Paid"
    hub.runtime.log.append_many([billing_event(hub.runtime, be) for be in heard[cut:]])
    await hub.settle()
    assert_no_failures(hub)
    logged = sorted(
        list_events(hub.runtime, subject=f"contract:{CONTRACT}", limit=200),
        key=lambda r: r.sequence,
    )
    of_settled = {be.id for be in heard if (be.data.get("object") or {}).get("id") == settled.id}
    about = [r.type for r in logged if r.id in of_settled]
    assert about.index("billing.payment.succeeded") < about.index("billing.invoice.finalized")
    assert all(r.status == "done" for r in logged)

    # CRM: the invoice and the opportunity show Paid, nothing owed.
    [crm_settled] = desk.invoices(str(settled.number))
    assert (crm_settled["Status__c"], Decimal(str(crm_settled["Balance__c"]))) == (
        "Paid",
        Decimal(0),
    )
    assert Decimal(str(crm_settled["Amount__c"])) == Decimal("53.55")
    assert desk.sf.Opportunity.get(opportunity)["Invoice_Status__c"] == "Paid"

    # ERP: the invoice is paid from the credit note (no cash), which keeps the rest open; what the
    # customer is owed agrees with billing's balance.
    gid = hub.deps.xref.global_id_for(Kind.INVOICE, "billing", settled.id)
    erp_id = hub.deps.xref.local_id(gid, "erp") if gid else None
    assert erp_id is not None, "the settled invoice never reached the ERP"
    ledger = await erp_ledger(world, NAME)
    by_id = {int(d["id"]): d for d in ledger["documents"]}
    paid = by_id[int(erp_id)]
    assert (paid["total_amount"], paid["state"], paid["amount_to_pay"]) == (
        Decimal("53.55"),
        "paid",
        Decimal(0),
    )
    assert sum(Decimal(li["credit"]) for li in ledger["cash_lines"]) == Decimal("267.75")
    assert ledger["receivable"] == billing_owes(world, customer) == Decimal("-53.55")
