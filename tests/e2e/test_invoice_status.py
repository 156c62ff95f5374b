"""GetInvoiceStatus answers from the hub's own state (it is given no system to call), by any
system's id, and agrees with what each system holds (read directly)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from quote2cash.canonical import Money
from quote2cash.engine.errors import DataError
from quote2cash.engine.queries import failed_events
from quote2cash.flows.status import get_invoice_status
from quote2cash.masterdata.xref import Kind


async def test_invoice_status_by_any_id_before_and_after_payment(world: World, hub: Hub) -> None:
    desk = world.desk
    account = desk.account(
        "Status Check Inc.",
        currency="USD",
        BillingStreet="1 Main St",
        BillingCity="Austin",
        BillingPostalCode="73301",
        BillingState="TX",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    desk.deal(
        account,
        "USD",
        [Line(sf_products(desk)["PLAT-SEAT"], 3, "49.00")],
        name="Status check",
        Contract_Number__c="C-ST-0001",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]

    client = world.stripe()
    [bill] = client.v1.invoices.list().data  # this module's world has only this deal
    assert bill.parent.subscription_details.metadata["contract_number"] == "C-ST-0001"
    [crm] = desk.invoices(bill.number)
    gid = hub.deps.xref.global_id_for(Kind.INVOICE, "billing", bill.id)
    assert gid is not None
    erp_id = hub.deps.xref.local_id(gid, "erp")
    assert erp_id is not None

    views = [
        get_invoice_status(hub.runtime, hub.deps.xref, ident)
        for ident in (bill.id, erp_id, bill.number, crm["Id"], gid)
    ]
    assert all(v == views[0] for v in views)
    view = views[0]
    assert (view.billing_id, view.erp_id, view.crm_id, view.global_id) == (
        bill.id,
        erp_id,
        crm["Id"],
        gid,
    )
    assert view.number == bill.number and view.contract == "C-ST-0001"
    assert bill.total == 14700
    assert view.status == "open" and view.total == Money("147.00", "USD")
    assert view.amount_due == view.total and view.amount_paid == Money("0", "USD")
    assert view.due_date == datetime.fromtimestamp(bill.due_date, UTC).date()
    assert view.paid_at is None and view.posted_in_erp and not view.payment_applied_in_erp

    # The ERP agrees on the amount (read over JSON-RPC).
    async with world.erp_client() as erp:
        [row] = await erp.model("account.invoice").read([int(erp_id)], ["total_amount"])
    assert row["total_amount"] == Decimal("147.00")

    client.v1.invoices.pay(bill.id, params={"paid_out_of_band": True})
    await hub.settle()
    assert failed_events(hub.runtime) == []

    paid = get_invoice_status(hub.runtime, hub.deps.xref, crm["Id"])
    assert paid.status == "paid" and paid.amount_due == Money("0", "USD")
    assert paid.amount_paid == Money("147.00", "USD")
    paid_at = client.v1.invoices.retrieve(bill.id).status_transitions.paid_at
    assert paid.paid_at == datetime.fromtimestamp(paid_at, UTC)
    assert paid.payment_applied_in_erp and paid.as_of >= view.as_of

    with pytest.raises(DataError, match="knows no invoice"):
        get_invoice_status(hub.runtime, hub.deps.xref, "in_does_not_exist")
