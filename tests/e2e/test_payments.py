"""Payment sync seen as finance sees it: a declined card leaves the balance open, the invoice
falls Overdue at its due date, a card payment settles it in the ERP, and refunds reverse that
payment in the ERP (the invoice owes the refunded amount again) while the CRM shows Refunded.
Each system is read directly; GetInvoiceStatus is read through the API."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stripe

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, running_hub, sf_products
from e2e.test_erp_window import empty_crm_and_billing
from integration.api.conftest import served
from quote2cash.api.app import build_app
from quote2cash.connectors.stripe.config import CollectionMethod
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.masterdata.xref import Kind
from quote2cash.sandbox.seed import seed_salesforce
from support.identity import first_admin, new_operator, token_of

DAY = 86400
ADDRESS = {
    "BillingStreet": "9 Refund Way",
    "BillingCity": "Austin",
    "BillingPostalCode": "73301",
    "BillingState": "TX",
    "BillingCountryCode": "US",
    "BillingCountry": "United States",
}


def _crm(world: World, number: str) -> tuple[str, Decimal]:
    """The CRM's Invoice__c status and balance (Salesforce sends currency as JSON numbers)."""
    [row] = world.desk.invoices(number)
    return str(row["Status__c"]), Decimal(str(row["Balance__c"])).quantize(Decimal("0.01"))


async def _erp_invoice(world: World, erp_id: str) -> dict[str, Any]:
    async with world.erp_client() as erp:
        [row] = await erp.model("account.invoice").read(
            [int(erp_id)], ["state", "total_amount", "amount_to_pay"]
        )
    return dict(row)


async def _erp_due_dates(world: World, erp_id: str) -> list[date]:
    """The maturity dates of the ERP invoice's receivable lines."""
    async with world.erp_client() as erp:
        [row] = await erp.model("account.invoice").read([int(erp_id)], ["lines_to_pay"])
        lines = await erp.model("account.move.line").read(row["lines_to_pay"], ["maturity_date"])
    return [line["maturity_date"] for line in lines]


def _deal_invoice_status(world: World, opportunity: str) -> str | None:
    value = world.desk.sf.Opportunity.get(opportunity)["Invoice_Status__c"]
    return None if value is None else str(value)


async def _settled(hub: Hub) -> None:
    await hub.settle()
    failures = failed_events(hub.runtime)
    assert failures == [], [e.last_error for e in failures]


async def test_declined_overdue_paid_then_refunded_in_two_steps(
    world: World, tmp_path: Path
) -> None:
    client = world.stripe()
    start = int(time.time())
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    customer = client.v1.customers.create(
        params={"name": "Refund Works LLC", "test_clock": clock.id}
    )
    desk = world.desk
    account = desk.account(
        "Refund Works LLC", currency="USD", Billing_Customer_Id__c=customer.id, **ADDRESS
    )
    opportunity = desk.deal(
        account,
        "USD",
        [Line(sf_products(desk)["PLAT-SEAT"], 3, "49.00")],
        name="Refunds",
        Contract_Number__c="C-RF-0001",
    )
    async with running_hub(world, tmp_path, days_until_due=14) as hub:
        await _settled(hub)
        [bill] = client.v1.invoices.list(params={"customer": customer.id}).data
        assert (bill.status, bill.amount_remaining) == ("open", 14700)
        gid = hub.deps.xref.global_id_for(Kind.INVOICE, "billing", bill.id)
        erp_id = hub.deps.xref.local_id(gid, "erp") if gid else None
        assert erp_id is not None
        # The ERP invoice falls due when billing's does (send invoice, 14 days).
        assert bill.due_date is not None
        billing_due = datetime.fromtimestamp(bill.due_date, UTC).date()
        assert await _erp_due_dates(world, erp_id) == [billing_due]
        assert _deal_invoice_status(world, opportunity) == "Open"

        # A declined card: nothing moves in the ERP; the CRM sees the balance, not yet overdue.
        with pytest.raises(stripe.CardError):
            client.v1.invoices.pay(bill.id, params={"payment_method": "pm_card_chargeDeclined"})
        await _settled(hub)
        assert _crm(world, bill.number) == ("Open", Decimal("147.00"))

        # Past its due date (14 days) the invoice is Overdue, still with its balance.
        client.v1.test_helpers.test_clocks.advance(
            clock.id, params={"frozen_time": start + 15 * DAY}
        )
        await _settled(hub)
        assert _crm(world, bill.number) == ("Overdue", Decimal("147.00"))
        assert _deal_invoice_status(world, opportunity) == "Overdue"
        assert (await _erp_invoice(world, erp_id))["amount_to_pay"] == Decimal("147.00")

        # Paid by card: Paid everywhere.
        client.v1.invoices.pay(bill.id, params={"payment_method": "pm_card_visa"})
        await _settled(hub)
        assert _crm(world, bill.number) == ("Paid", Decimal("0.00"))
        assert _deal_invoice_status(world, opportunity) == "Paid"
        assert (await _erp_invoice(world, erp_id))["state"] == "paid"

        # A partial refund reopens that much in the ERP; the CRM shows it.
        [paid] = client.v1.invoice_payments.list(params={"invoice": bill.id, "status": "paid"}).data
        intent = paid.payment.payment_intent
        assert (paid.status, intent is not None) == ("paid", True)
        client.v1.refunds.create(params={"payment_intent": intent, "amount": 4700})
        await _settled(hub)
        erp = await _erp_invoice(world, erp_id)
        assert (erp["state"], erp["amount_to_pay"]) == ("posted", Decimal("47.00"))
        assert _crm(world, bill.number) == ("Partially Refunded", Decimal("47.00"))

        # The rest: the ERP invoice owes its whole total again.
        client.v1.refunds.create(params={"payment_intent": intent})
        await _settled(hub)
        erp = await _erp_invoice(world, erp_id)
        assert (erp["state"], erp["amount_to_pay"]) == ("posted", Decimal("147.00"))
        assert _crm(world, bill.number) == ("Refunded", Decimal("147.00"))
        assert _deal_invoice_status(world, opportunity) == "Refunded"
        latest = client.v1.payment_intents.retrieve(intent).latest_charge
        charge = client.v1.charges.retrieve(str(latest))
        assert charge.amount_refunded == 14700

        # Stripe's charge names no subscription, so each refund event is routed to the contract
        # of the invoice it refunds: handled there, in order, and in the deal's trace.
        contract = "contract:C-RF-0001"
        [deal] = list_events(hub.runtime, subject=contract, type_prefix="crm.opportunity")
        routed = list_events(hub.runtime, subject=contract, type_prefix="billing.payment.refunded")
        assert [(r.source, r.status) for r in routed] == [("q2c", "done")] * 2
        assert {r.correlation_id for r in routed} == {deal.correlation_id}
        heard = list_events(hub.runtime, type_prefix="billing.payment.refunded", limit=100)
        assert {r.subject for r in heard if r.source == "billing"} == {f"billing:{customer.id}"}

        # GetInvoiceStatus over the API, by the CRM's invoice number, from the hub's own state.
        finance = new_operator(hub.runtime, first_admin(hub.runtime), "finance-ui", "viewer")
        token = token_of(hub.runtime, finance)
        async with served(build_app(hub.runtime)) as base, aiohttp.ClientSession() as http:
            async with http.get(
                f"{base}/v1/invoices/{bill.number}",
                headers={"Authorization": f"Bearer {token}"},
            ) as answered:
                assert answered.status == 200
                body = (await answered.json())["invoice"]
            async with http.get(f"{base}/v1/invoices/{bill.number}") as anonymous:
                assert anonymous.status == 401
            async with http.get(
                f"{base}/v1/invoices/in_unknown", headers={"Authorization": f"Bearer {token}"}
            ) as unknown:
                assert unknown.status == 404
        assert body["billing_id"] == bill.id and body["erp_id"] == erp_id
        assert body["status"] == "paid"
        assert body["amount_refunded"] == {"amount": "147.00", "currency": "USD"}
        assert body["refund_reversed_in_erp"] is True
        assert body["total"] == {"amount": "147.00", "currency": "USD"}


async def test_a_declined_charge_without_a_due_date_is_open_not_overdue(
    world: World, tmp_path: Path
) -> None:
    """Charged automatically, an invoice has no due date: a declined card leaves it Open (billing
    retries the charge), never Overdue."""
    empty_crm_and_billing(world)  # a hub of its own: the other test's deal is not its business
    await seed_salesforce(world.sf_url, world.sf_ca)
    desk = world.desk
    account = desk.account("Auto Charge Co.", currency="USD", **ADDRESS)
    opportunity = desk.deal(
        account,
        "USD",
        [Line(sf_products(desk)["PLAT-SEAT"], 2, "49.00")],
        name="Auto charge",
        Contract_Number__c="C-AC-0001",
    )
    client = world.stripe()
    async with running_hub(
        world, tmp_path, collection_method=CollectionMethod.CHARGE_AUTOMATICALLY
    ) as hub:
        await _settled(hub)
        [customer] = [
            c for c in client.v1.customers.list().auto_paging_iter() if c.name == "Auto Charge Co."
        ]
        [bill] = client.v1.invoices.list(params={"customer": customer.id}).data
        assert (bill.collection_method, bill.due_date) == ("charge_automatically", None)
        if bill.status == "draft":
            bill = client.v1.invoices.finalize_invoice(bill.id)
        with pytest.raises(stripe.CardError):
            client.v1.invoices.pay(bill.id, params={"payment_method": "pm_card_chargeDeclined"})
        await _settled(hub)
        assert _crm(world, bill.number) == ("Open", Decimal("98.00"))
        assert _deal_invoice_status(world, opportunity) == "Open"
