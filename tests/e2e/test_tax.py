"""Tax determination end to end: Q2C GmbH charges a German customer 19 % VAT, reverse-charges an
EU business with a VAT id, and Q2C Inc. charges its US customer no sales tax (config/tax.yaml).

Billing computes the tax per line (Stripe's tax rates), the ERP posts the same tax on the right
tax, and the CRM shows the same total: each is read from the system itself (Stripe SDK, Tryton
JSON-RPC, simple-salesforce). The German deal's amounts round differently per line and per
document (a cent apart), so the ERP must post billing's per-line tax.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from quote2cash.engine.queries import failed_events

GERMAN = "Steuerwerk Maschinenbau GmbH"
FRENCH = "Réseau Atelier SARL"
AMERICAN = "Lone Star Tooling Inc."


async def erp_invoice(world: World, party_name: str) -> dict[str, Any]:
    """The one posted ERP customer invoice of a party, with its tax lines by tax name."""
    async with world.erp_client() as erp:
        [party] = await erp.model("party.party").search_read([("name", "=", party_name)], ["id"])
        [row] = await erp.model("account.invoice").search_read(
            [("party", "=", party["id"]), ("type", "=", "out"), ("state", "=", "posted")],
            ["total_amount", "tax_amount", "untaxed_amount", "reference"],
        )
        taxes = await erp.model("account.invoice.tax").search_read(
            [("invoice", "=", row["id"])], ["tax.name", "base", "amount"]
        )
    row["taxes"] = {t["tax."]["name"]: (Decimal(t["base"]), Decimal(t["amount"])) for t in taxes}
    return row


def first_invoice(world: World, opportunity: str) -> Any:
    subscription = str(world.desk.sf.Opportunity.get(opportunity)["Subscription_Id__c"])
    [invoice] = world.stripe().v1.invoices.list(params={"subscription": subscription}).data
    return invoice


def crm_amount(world: World, number: str) -> Decimal:
    [row] = world.desk.invoices(number)
    return Decimal(str(row["Amount__c"]))


async def test_vat_reverse_charge_and_untaxed_agree_to_the_cent_in_all_three_systems(
    world: World, hub: Hub
) -> None:
    desk = world.desk
    products = sf_products(desk)
    german = desk.account(
        GERMAN,
        currency="EUR",
        BillingStreet="Industriestrasse 4",
        BillingCity="Stuttgart",
        BillingPostalCode="70565",
        BillingCountryCode="DE",
        BillingCountry="Germany",
        VAT_Number__c="DE811569869",
    )
    german_deal = desk.deal(
        german,
        "EUR",
        [
            Line(products["PLAT-SEAT"], 10, "45.00", discount="15"),
            Line(products["SUPPORT-PREM"], 1, "179.00", discount="10"),
            Line(products["API-CALLS"], 1, "0.00"),
        ],
        name="Steuerwerk platform",
        Contract_Number__c="C-TX-0001",
    )
    french = desk.account(
        FRENCH,
        currency="EUR",
        BillingStreet="12 rue de la Paix",
        BillingCity="Paris",
        BillingPostalCode="75002",
        BillingCountryCode="FR",
        BillingCountry="France",
        VAT_Number__c="FR40303265045",
    )
    french_deal = desk.deal(
        french,
        "EUR",
        [Line(products["PLAT-SEAT"], 3, "45.00")],
        name="Réseau seats",
        Contract_Number__c="C-TX-0002",
    )
    american = desk.account(
        AMERICAN,
        currency="USD",
        BillingStreet="500 Main St",
        BillingCity="Dallas",
        BillingState="TX",
        BillingPostalCode="75201",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    american_deal = desk.deal(
        american,
        "USD",
        [Line(products["PLAT-SEAT"], 5, "49.00")],
        name="Lone Star seats",
        Contract_Number__c="C-TX-0003",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    client = world.stripe()

    # Germany: 10 seats at 45.00 less 15 % (382.50) and support at 179.00 less 10 % (161.10),
    # each taxed at 19 % and rounded per line: 72.675 -> 72.68 and 30.609 -> 30.61 (103.29);
    # on the document 103.284 would round to 103.28.
    invoice = first_invoice(world, german_deal)
    taxed = sorted(
        (line.amount - sum(d.amount for d in line.discount_amounts), line.taxes[0].amount)
        for line in invoice.lines.data
    )
    assert taxed == [(16110, 3061), (38250, 7268)]
    [vat] = invoice.total_taxes
    rate = client.v1.tax_rates.retrieve(vat.tax_rate_details.tax_rate)
    assert (rate.percentage, rate.country, rate.metadata["q2c_tax_code"]) == (19, "DE", "DE-VAT-19")
    assert (vat.amount, invoice.total_excluding_tax, invoice.total) == (10329, 54360, 64689)
    assert round(Decimal(54360) * Decimal("0.19")) != 10329  # the document rounding differs
    erp = await erp_invoice(world, GERMAN)
    assert (erp["total_amount"], erp["tax_amount"]) == (Decimal("646.89"), Decimal("103.29"))
    assert erp["taxes"] == {"DE VAT 19%": (Decimal("543.60"), Decimal("103.29"))}
    assert crm_amount(world, str(invoice.number)) == Decimal("646.89")

    # France, with a VAT id: reverse charge, no tax; billing marks the customer `reverse`.
    invoice = first_invoice(world, french_deal)
    assert client.v1.customers.retrieve(invoice.customer).tax_exempt == "reverse"
    [reverse] = invoice.total_taxes
    assert (reverse.amount, reverse.taxability_reason, invoice.total) == (
        0,
        "reverse_charge",
        13500,
    )
    erp = await erp_invoice(world, FRENCH)
    assert (erp["total_amount"], erp["tax_amount"]) == (Decimal("135.00"), Decimal("0"))
    assert erp["taxes"] == {"EU VAT reverse charge": (Decimal("135.00"), Decimal("0"))}
    assert crm_amount(world, str(invoice.number)) == Decimal("135.00")

    # United States: Q2C Inc. charges no sales tax (no state registrations configured).
    invoice = first_invoice(world, american_deal)
    assert (invoice.total_taxes, invoice.default_tax_rates, invoice.total) == ([], [], 24500)
    erp = await erp_invoice(world, AMERICAN)
    assert (erp["total_amount"], erp["tax_amount"], erp["taxes"]) == (
        Decimal("245.00"),
        Decimal("0"),
        {},
    )
    assert crm_amount(world, str(invoice.number)) == Decimal("245.00")
    # The tax rates exist once each in billing, however many contracts use them.
    codes = [r.metadata["q2c_tax_code"] for r in client.v1.tax_rates.list().data]
    assert sorted(codes) == ["DE-VAT-19", "EU-VAT-RC"]
