"""Multi-entity: a German account is served by Q2C GmbH in EUR, a US account by Q2C Inc. in USD.

Sales reps close one deal each; the end state is read from each system directly: Tryton over
JSON-RPC (company and currency of the customer's booking and posted invoice), Stripe through the
SDK (invoice currency and prices), Salesforce through simple-salesforce (the entity written back).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from contract.crm.salesforce_harness import Line
from e2e.conftest import CONFIG, Hub, World, sf_products
from e2e.test_amendments import start_intake_now
from e2e.test_ownership import settle_with_accounts
from quote2cash.engine.queries import failed_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.systems import SystemLimits
from quote2cash.engine.worker import Worker
from quote2cash.flows import build_registry
from quote2cash.flows.deps import FlowDeps
from quote2cash.sandbox.systems import tryton_config


@pytest.fixture
async def hub(world: World, tmp_path: Path) -> AsyncIterator[Hub]:
    """The hub with one ERP step at a time (the sandbox ERP is SQLite: one writer)."""
    runtime = Runtime.open(
        f"sqlite:///{tmp_path / 'hub.sqlite'}",
        sqlite_synchronous="NORMAL",
        limits={"erp": SystemLimits(max_concurrency=1)},
    )
    systems = world.systems()
    async with systems:
        deps = FlowDeps.build(runtime, systems, CONFIG)
        yield Hub(runtime, deps, Worker(runtime, build_registry(deps)), systems)
    runtime.close()


async def test_each_account_lands_in_its_legal_entity_and_currency(world: World, hub: Hub) -> None:
    desk = world.desk
    products = sf_products(desk)
    german = desk.account(
        "Weber Feinmechanik GmbH",
        currency="EUR",
        BillingStreet="Leopoldstraße 12",
        BillingCity="München",
        BillingPostalCode="80331",
        BillingCountryCode="DE",
        BillingCountry="Germany",
    )
    american = desk.account(
        "Granite Peak Outfitters Inc.",
        currency="USD",
        BillingStreet="1600 Market St",
        BillingCity="Denver",
        BillingState="CO",
        BillingPostalCode="80202",
        BillingCountryCode="US",
        BillingCountry="United States",
    )
    # GB buying in USD: no European rule takes USD, so Q2C Inc. contracts (rest of world).
    british = desk.account(
        "Thames Analytics Ltd",
        currency="USD",
        BillingStreet="1 Canada Square",
        BillingCity="London",
        BillingPostalCode="E14 5AB",
        BillingCountryCode="GB",
        BillingCountry="United Kingdom",
    )
    desk.deal(
        british,
        "USD",
        [Line(products["PLAT-SEAT"], 3, "49.00")],
        name="Thames platform",
        Contract_Number__c="C-ME-GB-1",
    )
    desk.deal(
        german,
        "EUR",
        [Line(products["PLAT-SEAT"], 7, "45.00"), Line(products["SUPPORT-PREM"], 1, "179.00")],
        name="Weber platform",
        Contract_Number__c="C-ME-DE-1",
    )
    desk.deal(
        american,
        "USD",
        [Line(products["PLAT-SEAT"], 12, "49.00")],
        name="Granite Peak platform",
        Contract_Number__c="C-ME-US-1",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]

    entities = tryton_config(world.erp).legal_entities
    # The booking is the contract's net value; the GmbH invoices 19 % German VAT on top
    # (59.85 + 34.01), Q2C Inc. no sales tax (config/tax.yaml).
    expected = {
        "Weber Feinmechanik GmbH": (entities["DE"].company, "EUR", Decimal("494.00")),
        "Granite Peak Outfitters Inc.": (entities["US"].company, "USD", Decimal("588.00")),
        "Thames Analytics Ltd": (entities["US"].company, "USD", Decimal("147.00")),
    }
    invoiced = {
        "Weber Feinmechanik GmbH": Decimal("587.86"),
        "Granite Peak Outfitters Inc.": None,
        "Thames Analytics Ltd": None,
    }
    assert entities["DE"].company != entities["US"].company

    # ERP: the booking and the posted invoice in the entity's company and currency.
    async with world.erp_client() as erp:
        for name, (company, currency, total) in expected.items():
            [party] = await erp.model("party.party").search([("name", "=", name)])
            sales = await erp.model("sale.sale").search_read(
                [("party", "=", party)], ["company", "currency.code", "total_amount", "state"]
            )
            assert [(s["company"], s["currency."]["code"]) for s in sales] == [(company, currency)]
            assert sales[0]["total_amount"] == total and sales[0]["state"] != "draft"
            invoices = await erp.model("account.invoice").search_read(
                [("party", "=", party), ("type", "=", "out")],
                ["company", "company.rec_name", "currency.code", "total_amount", "state"],
            )
            assert len(invoices) == 1, invoices
            invoice = invoices[0]
            assert invoice["company"] == company
            assert invoice["currency."]["code"] == currency
            gross = invoiced[name] or total
            assert invoice["total_amount"] == gross and invoice["state"] == "posted"
            assert ("GmbH" if currency == "EUR" else "Inc.") in invoice["company."]["rec_name"]

    # Billing: the customer's invoice and prices are in the entity's currency.
    client = world.stripe()
    for name, (_, currency, total) in expected.items():
        [customer] = [c for c in client.v1.customers.list().auto_paging_iter() if c.name == name]
        [subscription] = list(client.v1.subscriptions.list(params={"customer": customer.id}).data)
        assert {item["price"]["currency"] for item in subscription["items"]["data"]} == {
            currency.lower()
        }
        [invoice] = list(client.v1.invoices.list(params={"customer": customer.id}).data)
        assert invoice.currency == currency.lower()
        assert Decimal(invoice.total) / 100 == (invoiced[name] or total)

    # CRM: the legal entity the hub resolved is written back on each account.
    accounts: dict[str, Any] = {
        "Weber Feinmechanik GmbH": desk.sf.Account.get(german),
        "Granite Peak Outfitters Inc.": desk.sf.Account.get(american),
        "Thames Analytics Ltd": desk.sf.Account.get(british),
    }
    assert accounts["Weber Feinmechanik GmbH"]["Legal_Entity__c"] == "DE"
    assert accounts["Granite Peak Outfitters Inc."]["Legal_Entity__c"] == "US"
    assert accounts["Thames Analytics Ltd"]["Legal_Entity__c"] == "US"
    rows = desk.sf.query("SELECT Amount__c, Account__c FROM Invoice__c")["records"]
    amounts = {r["Account__c"]: Decimal(str(r["Amount__c"])) for r in rows}
    assert amounts == {
        german: Decimal("587.86"),
        american: Decimal("588.00"),
        british: Decimal("147.00"),
    }


async def test_one_account_buying_through_two_entities_is_one_erp_customer_per_entity(
    world: World, hub: Hub
) -> None:
    """A German group buys in EUR from Q2C GmbH and in USD from Q2C Inc.: one CRM account, one
    golden customer, two ERP customers (each in its company with its own tax registration)
    and a billing customer per currency; the CRM shows the home ERP customer and both entities."""
    await start_intake_now(hub.runtime, world)
    desk = world.desk
    products = sf_products(desk)
    account = desk.account(
        "Nordlicht Global GmbH",
        currency="EUR",
        BillingStreet="Speicherstadt 5",
        BillingCity="Hamburg",
        BillingPostalCode="20457",
        BillingCountryCode="DE",
        BillingCountry="Germany",
        VAT_Number__c="DE811569869",
        EIN__c="04-2103594",
    )
    desk.deal(
        account,
        "EUR",
        [Line(products["PLAT-SEAT"], 4, "45.00")],
        name="Nordlicht Europe",
        Contract_Number__c="C-MS-EUR-1",
    )
    await hub.settle()
    desk.deal(
        account,
        "USD",
        [Line(products["PLAT-SEAT"], 3, "49.00")],
        name="Nordlicht Americas",
        Contract_Number__c="C-MS-USD-1",
    )
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]

    # The hub: one golden customer for the account, keyed per entity.
    xref = hub.deps.xref
    golden = xref.global_id_for("customer", "crm", account)
    assert golden is not None
    served = hub.deps.entity_customers.entities_of(golden)
    assert set(served) == {"DE", "US"} and served["DE"] == golden != served["US"]
    assert hub.deps.entity_customers.customer_of(served["US"]) == golden
    erp_ids = {entity: xref.local_id(gid, "erp") for entity, gid in served.items()}
    assert None not in erp_ids.values() and erp_ids["DE"] != erp_ids["US"]

    # ERP: two parties, each with its own tax registration, selling in its own company.
    entities = tryton_config(world.erp).legal_entities
    async with world.erp_client() as erp:
        parties = await erp.model("party.party").search_read(
            [("name", "=", "Nordlicht Global GmbH")], ["identifiers"]
        )
        assert sorted(str(p["id"]) for p in parties) == sorted(str(i) for i in erp_ids.values())
        for entity, erp_id in erp_ids.items():
            idents = await erp.model("party.identifier").search_read(
                [("party", "=", int(str(erp_id))), ("type", "!=", None)], ["type", "code"]
            )
            sales = await erp.model("sale.sale").search_read(
                [("party", "=", int(str(erp_id)))], ["company", "currency.code"]
            )
            invoices = await erp.model("account.invoice").search_read(
                [("party", "=", int(str(erp_id))), ("type", "=", "out")], ["company"]
            )
            company = entities[entity].company
            currency = "EUR" if entity == "DE" else "USD"
            assert [(s["company"], s["currency."]["code"]) for s in sales] == [(company, currency)]
            assert [i["company"] for i in invoices] == [company]
            kinds = {i["type"] for i in idents}
            assert kinds == ({"eu_vat"} if entity == "DE" else {"us_ein"}), idents

    # Billing: a customer per currency (billing holds one currency per customer).
    client = world.stripe()
    named = [
        c
        for c in client.v1.customers.list().auto_paging_iter()
        if c.name == "Nordlicht Global GmbH"
    ]
    currencies = sorted(
        item["price"]["currency"]
        for c in named
        for s in client.v1.subscriptions.list(params={"customer": c.id}).data
        for item in s["items"]["data"]
    )
    assert len(named) == 2 and currencies == ["eur", "usd"]

    # CRM: the home (first) entity's ERP customer and both entities on the one account.
    shown = desk.sf.Account.get(account)
    assert shown["Legal_Entity__c"] == "DE,US"
    assert shown["ERP_Customer_Number__c"] == erp_ids["DE"]
    assert shown["Hub_Global_Id__c"] == golden

    # A CRM-owned edit reaches every entity's ERP customer and billing customer.
    desk.sales_rep().Account.update(account, {"Name": "Nordlicht Group GmbH"})
    await settle_with_accounts(hub)
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    async with world.erp_client() as erp:
        renamed = await erp.model("party.party").search([("name", "=", "Nordlicht Group GmbH")])
    assert sorted(renamed) == sorted(int(str(i)) for i in erp_ids.values())
    names = {client.v1.customers.retrieve(c.id).name for c in named}
    assert names == {"Nordlicht Group GmbH"}
