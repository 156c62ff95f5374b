"""Business scenarios run against a real Tryton on both backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.sandbox.tryton import SandboxSetup

EU_VAT_NOT_VALIDATED = "account.invoice eu_vat valid"


@dataclass
class PostedInvoice:
    invoice: int
    line: int
    defer_from: dt.date
    defer_to: dt.date


def service_period(today: dt.date) -> tuple[dt.date, dt.date]:
    """Twelve months from the first of next month (inside the template's two fiscal years)."""
    start = dt.date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    end = dt.date(start.year + 1, start.month, 1) - dt.timedelta(days=1)
    return start, end


async def create_german_customer(erp: TrytonClient, setup: SandboxSetup) -> int:
    gmbh = setup.companies["gmbh"]
    ctx = erp.context_for(company=gmbh.company)
    return await erp.model("party.party").create_one(
        {
            "name": f"Kunde AG {uuid.uuid4().hex[:6]}",
            "addresses": [
                (
                    "create",
                    [
                        {
                            "street_unstructured": "Hauptstrasse 5",
                            "city": "München",
                            "postal_code": "80331",
                            "country": setup.countries["DE"],
                        }
                    ],
                )
            ],
            "identifiers": [("create", [{"type": "eu_vat", "code": "DE811569869"}])],
        },
        context=ctx,
    )


async def create_draft_seat_invoice(
    erp: TrytonClient, setup: SandboxSetup, party: int, *, seats: int = 10
) -> PostedInvoice:
    """A EUR invoice of Q2C GmbH for platform seats, deferred over a 12-month service period."""
    gmbh = setup.companies["gmbh"]
    ctx = erp.context_for(company=gmbh.company)
    [address] = await erp.model("party.address").search([("party", "=", party)], context=ctx)
    today = dt.datetime.now(dt.UTC).date()
    defer_from, defer_to = service_period(today)
    invoice = await erp.model("account.invoice").create_one(
        {
            "type": "out",
            "company": gmbh.company,
            "currency": setup.currencies["EUR"],
            "party": party,
            "invoice_address": address,
            "account": gmbh.receivable_account,
            "journal": gmbh.revenue_journal,
            "invoice_date": today,
            "lines": [
                (
                    "create",
                    [
                        {
                            "type": "line",
                            "product": setup.products["PLAT-SEAT"],
                            "description": "Platform seat, 12 months",
                            "quantity": float(seats),
                            "unit": setup.unit_uom,
                            "unit_price": Decimal("46.00"),
                            "account": gmbh.revenue_account,
                            "taxes": [("add", [gmbh.sales_tax])],
                            "defer_from": defer_from,
                            "defer_to": defer_to,
                        }
                    ],
                )
            ],
        },
        context=ctx,
    )
    [line] = await erp.model("account.invoice.line").search(
        [("invoice", "=", invoice)], context=ctx
    )
    return PostedInvoice(invoice, line, defer_from, defer_to)


async def pay_invoice(erp: TrytonClient, setup: SandboxSetup, invoice: int) -> None:
    gmbh = setup.companies["gmbh"]
    ctx = erp.context_for(company=gmbh.company)
    async with erp.wizard(
        "account.invoice.pay", active_model="account.invoice", active_ids=[invoice], context=ctx
    ) as wizard:
        form = await wizard.start()
        assert form is not None and "choice" in form.buttons
        assert form.defaults["amount"] == Decimal("547.40")
        done = await wizard.press(
            "choice",
            {"payment_method": gmbh.payment_method, "date": dt.datetime.now(dt.UTC).date()},
        )
        assert done is None
