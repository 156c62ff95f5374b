"""Stale events never overwrite a newer state: what billing reports late is checked against
billing now. Read from billing, the ERP and the CRM directly."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import stripe

from contract.crm.salesforce_harness import Line
from e2e.conftest import World, running_hub, sf_products
from quote2cash.connectors.roles import BillingEvent
from quote2cash.engine.queries import EventRow, failed_events, list_events
from quote2cash.flows.intake import billing_event
from quote2cash.masterdata.xref import Kind

ADDRESS = {
    "BillingStreet": "9 Same Second Rd",
    "BillingCity": "Austin",
    "BillingPostalCode": "73301",
    "BillingState": "TX",
    "BillingCountryCode": "US",
    "BillingCountry": "United States",
}


async def test_a_declined_card_heard_after_the_good_one_leaves_the_invoice_paid(
    world: World, tmp_path: Path
) -> None:
    """A declined card and a good one in the same second: billing's ``payment.failed`` reaches
    the hub after ``payment.succeeded``; the stale failure never writes Open over Paid."""
    client, desk = world.stripe(), world.desk
    account = desk.account("Same Second Retry LLC", currency="USD", **ADDRESS)
    desk.deal(
        account,
        "USD",
        [Line(sf_products(desk)["PLAT-SEAT"], 3, "49.00")],
        name="Retried at once",
        Contract_Number__c="C-RETRY-0001",
    )
    async with running_hub(world, tmp_path, days_until_due=14) as hub:
        assert hub.systems.crm is not None and hub.systems.billing is not None
        await hub.settle()
        customer = hub.deps.xref.local_id(
            hub.deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", account), "billing"
        )
        [bill] = client.v1.invoices.list(params={"customer": str(customer)}).data
        with pytest.raises(stripe.CardError):
            client.v1.invoices.pay(bill.id, params={"payment_method": "pm_card_chargeDeclined"})
        client.v1.invoices.pay(bill.id, params={"payment_method": "pm_card_visa"})

        def about(be: BillingEvent, type_: str) -> bool:
            return be.type == type_ and (be.data.get("object") or {}).get("id") == bill.id

        heard = (await hub.systems.billing.list_events(limit=100)).items
        [failed] = [be for be in heard if about(be, "billing.payment.failed")]
        [paid] = [be for be in heard if about(be, "billing.payment.succeeded")]
        hub.runtime.log.append_many([billing_event(hub.runtime, be) for be in (paid, failed)])
        await hub.worker.drain()
        await hub.settle()
        assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
        contract = "contract:C-RETRY-0001"
        types = [r.type for r in sorted(list_events(hub.runtime, subject=contract), key=seq)]
        assert types.index("billing.payment.succeeded") < types.index("billing.payment.failed")

        assert client.v1.invoices.retrieve(bill.id).status == "paid"
        [crm] = desk.invoices(bill.number)
        assert crm["Status__c"] == "Paid"
        assert Decimal(str(crm["Balance__c"])) == 0
        gid = hub.deps.xref.global_id_for(Kind.INVOICE, "billing", bill.id)
        erp_id = hub.deps.xref.local_id(gid, "erp") if gid else None
        assert erp_id is not None
        async with world.erp_client() as erp:
            [row] = await erp.model("account.invoice").read([int(erp_id)], ["state"])
        assert row["state"] == "paid"


def seq(row: EventRow) -> int:
    return row.sequence
