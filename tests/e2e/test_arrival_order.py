"""Arrival order is not business order: a payment billing reports before the invoice it pays
parks until the invoice sync has posted that invoice in the ERP, then is applied. Checked by
reading the ERP, billing and the CRM directly."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from contract.crm.salesforce_harness import Line
from e2e.conftest import World, running_hub, sf_products
from quote2cash.connectors.roles import BillingEvent
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.flows.intake import billing_event, poll_crm
from quote2cash.masterdata.xref import Kind

ADDRESS = {
    "BillingStreet": "1 Early Payment Rd",
    "BillingCity": "Austin",
    "BillingPostalCode": "73301",
    "BillingState": "TX",
    "BillingCountryCode": "US",
    "BillingCountry": "United States",
}


def payment_first(heard: list[BillingEvent], invoice_id: str) -> list[BillingEvent]:
    """Billing's events with the invoice's payment moved before its finalization."""

    def about(be: BillingEvent, type_: str) -> bool:
        return be.type == type_ and (be.data.get("object") or {}).get("id") == invoice_id

    [paid] = [be for be in heard if about(be, "billing.payment.succeeded")]
    rest = [be for be in heard if be is not paid]
    at = next(i for i, be in enumerate(rest) if about(be, "billing.invoice.finalized"))
    return [*rest[:at], paid, *rest[at:]]


async def test_a_payment_heard_before_its_invoice_parks_and_ends_paid_everywhere(
    world: World, tmp_path: Path
) -> None:
    client, desk = world.stripe(), world.desk
    account = desk.account("Early Payment LLC", currency="USD", **ADDRESS)
    desk.deal(
        account,
        "USD",
        [Line(sf_products(desk)["PLAT-SEAT"], 2, "49.00")],
        name="Paid at once",
        Contract_Number__c="C-EARLY-0001",
    )
    async with running_hub(world, tmp_path, days_until_due=14) as hub:
        assert hub.systems.crm is not None and hub.systems.billing is not None
        assert await poll_crm(hub.runtime, hub.systems.crm) == 1
        await hub.worker.drain()  # the deal: billing customer and subscription
        customer = hub.deps.xref.local_id(
            hub.deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", account), "billing"
        )
        [bill] = client.v1.invoices.list(params={"customer": str(customer)}).data
        client.v1.invoices.pay(bill.id, params={"payment_method": "pm_card_visa"})

        # The hub hears the payment before the invoice's finalization (in an earlier poll).
        heard = payment_first((await hub.systems.billing.list_events(limit=100)).items, bill.id)
        cut = next(i for i, be in enumerate(heard) if be.type == "billing.payment.succeeded") + 1
        hub.runtime.log.append_many([billing_event(hub.runtime, be) for be in heard[:cut]])
        report = await hub.worker.drain()
        assert report.parked == 1
        contract = "contract:C-EARLY-0001"
        [parked] = list_events(hub.runtime, subject=contract, status="parked")
        assert parked.type == "billing.payment.succeeded"
        assert parked.parked_on == f"erp-invoice-posted:{bill.id}"

        # The finalization arrives: the invoice is posted, which releases the payment; no retry
        # was spent and nothing waited behind the payment.
        hub.runtime.log.append_many([billing_event(hub.runtime, be) for be in heard[cut:]])
        report = await hub.worker.drain()
        assert report.unparked == 1
        logged = sorted(list_events(hub.runtime, subject=contract), key=lambda r: r.sequence)
        types = [r.type for r in logged]
        assert types.index("billing.payment.succeeded") < types.index("billing.invoice.finalized")
        [payment] = [r for r in logged if r.pos == parked.pos]
        assert (payment.status, payment.attempts) == ("done", 0)
        await hub.settle()
        assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
        assert all(r.status == "done" for r in list_events(hub.runtime, subject=contract))

        gid = hub.deps.xref.global_id_for(Kind.INVOICE, "billing", bill.id)
        erp_id = hub.deps.xref.local_id(gid, "erp") if gid else None
        assert erp_id is not None
        async with world.erp_client() as erp:
            [row] = await erp.model("account.invoice").read(
                [int(erp_id)], ["state", "total_amount", "amount_to_pay"]
            )
        assert (row["state"], row["total_amount"]) == ("paid", Decimal("98.00"))
        assert client.v1.invoices.retrieve(bill.id).status == "paid"
        [crm] = desk.invoices(client.v1.invoices.retrieve(bill.id).number)
        assert crm["Status__c"] == "Paid"
        assert Decimal(str(crm["Balance__c"])) == 0
