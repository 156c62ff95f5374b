"""The JSON-RPC client against a real Tryton 8.2 server (SQLite) holding the sandbox setup."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

from integration.tryton.tryton_scenarios import (
    EU_VAT_NOT_VALIDATED,
    create_draft_seat_invoice,
    create_german_customer,
    pay_invoice,
)
from quote2cash.connectors.tryton.client import (
    TrytonClient,
    TrytonStateConflict,
    TrytonUserError,
    TrytonWarning,
)
from quote2cash.engine.errors import (
    AuthError,
    Category,
    MappingError,
    PermanentError,
    TransientError,
)
from quote2cash.sandbox.tryton import ITEM_MASTER, TrytonEndpoint, TrytonSandbox


async def test_login_fetches_the_api_users_context(
    erp: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    setup = tryton_server.setup
    assert erp.user_id == setup.api_user
    assert erp.context["language"] == "en"
    assert not erp.context["administrator"]
    assert sorted(erp.context["companies"]) == sorted(c.company for c in setup.companies.values())
    [me] = await erp.model("res.user").read([erp.user_id or 0], ["login", "company_filter"])
    assert me["login"] == "q2c_hub"
    assert me["company_filter"] == "all"


async def test_two_legal_entities_with_their_currencies(
    erp: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    rows = await erp.model("company.company").search_read(
        [], ["rec_name", "currency.code"], order=[("id", "ASC")]
    )
    assert [(r["rec_name"], r["currency."]["code"]) for r in rows] == [
        ("Q2C Inc.", "USD"),
        ("Q2C GmbH", "EUR"),
    ]
    countries = await erp.model("country.country").search_read([], ["code"])
    assert {c["code"] for c in countries} >= {"US", "DE", "GB", "FR", "NL", "CA", "JP"}
    products = await erp.model("product.product").search_read([], ["code", "template.type"])
    assert {p["code"] for p in products} == {item.code for item in ITEM_MASTER}
    assert {p["template."]["type"] for p in products} == {"service"}
    gmbh = tryton_server.setup.companies["gmbh"]
    [config] = await erp.model("account.configuration").read(
        [1], ["deferred_account_revenue"], context=erp.context_for(company=gmbh.company)
    )
    assert config["deferred_account_revenue"] == gmbh.deferred_revenue_account


async def test_list_prices_follow_the_company_context(
    erp: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    setup = tryton_server.setup
    seat = setup.products["PLAT-SEAT"]
    prices = {}
    for key, company in setup.companies.items():
        [row] = await erp.model("product.product").read(
            [seat], ["list_price_used"], context=erp.context_for(company=company.company)
        )
        prices[key] = row["list_price_used"]
    assert prices == {"inc": Decimal("50.00"), "gmbh": Decimal("46.00")}
    assert all(isinstance(p, Decimal) for p in prices.values())


async def test_customer_with_address_and_eu_vat_in_the_german_company(
    erp: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    party = await create_german_customer(erp, tryton_server.setup)
    [row] = await erp.model("party.party").read(
        [party], ["name", "identifiers", "addresses", "create_date"]
    )
    assert row["name"].startswith("Kunde AG")
    assert isinstance(row["create_date"], dt.datetime) and row["create_date"].tzinfo == dt.UTC
    identifiers = await erp.model("party.identifier").read(row["identifiers"], ["type", "code"])
    assert [(i["type"], i["code"]) for i in identifiers] == [("eu_vat", "DE811569869")]
    [address] = await erp.model("party.address").read(
        row["addresses"], ["city", "postal_code", "country.code"]
    )
    assert (address["city"], address["postal_code"], address["country."]["code"]) == (
        "München",
        "80331",
        "DE",
    )


async def test_deferred_invoice_is_posted_to_the_cent_and_paid(
    erp: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    setup = tryton_server.setup
    gmbh_ctx = erp.context_for(company=setup.companies["gmbh"].company)
    invoices = erp.model("account.invoice")
    party = await create_german_customer(erp, setup)
    draft = await create_draft_seat_invoice(erp, setup, party)

    with pytest.raises(TrytonWarning) as refused:
        await invoices.execute_button("post", [draft.invoice], context=gmbh_ctx)
    assert refused.value.kind == EU_VAT_NOT_VALIDATED
    assert refused.value.category is Category.DATA
    [still] = await invoices.read([draft.invoice], ["state"], context=gmbh_ctx)
    assert still["state"] == "draft"

    await invoices.execute_button(
        "post", [draft.invoice], context=gmbh_ctx, allow_warnings=[EU_VAT_NOT_VALIDATED]
    )
    [posted] = await invoices.read(
        [draft.invoice],
        ["state", "number", "currency.code", "untaxed_amount", "tax_amount", "total_amount"],
        context=gmbh_ctx,
    )
    assert posted["state"] == "posted"
    assert posted["number"].startswith(f"GMBH-INV-{dt.datetime.now(dt.UTC).year}-")
    assert posted["currency."]["code"] == "EUR"
    assert posted["untaxed_amount"] == Decimal("460.00")
    assert posted["tax_amount"] == Decimal("87.40")
    assert posted["total_amount"] == Decimal("547.40")

    deferrals = await erp.model("account.invoice.deferred").search_read(
        [("invoice_line", "=", draft.line)],
        ["amount", "start_date", "end_date", "company", "type"],
        context=gmbh_ctx,
    )
    assert len(deferrals) == 1
    [deferral] = deferrals
    assert deferral["amount"] == Decimal("460.00")
    assert (deferral["start_date"], deferral["end_date"]) == (draft.defer_from, draft.defer_to)
    assert deferral["company"] == setup.companies["gmbh"].company

    with pytest.raises(TrytonStateConflict, match='You can not call "post"'):
        await invoices.execute_button(
            "post", [draft.invoice], context=gmbh_ctx, allow_warnings=[EU_VAT_NOT_VALIDATED]
        )

    deferred = erp.model("account.invoice.deferred")
    await deferred.execute_button("run", [deferral["id"]], context=gmbh_ctx)
    [recognised] = await deferred.read([deferral["id"]], ["state", "moves"], context=gmbh_ctx)
    assert recognised["state"] in {"running", "closed"}
    assert len(recognised["moves"]) >= 12  # the deferral move plus one per month of service

    await pay_invoice(erp, setup, draft.invoice)
    [paid] = await invoices.read([draft.invoice], ["state", "amount_to_pay"], context=gmbh_ctx)
    assert paid["state"] == "paid"
    assert paid["amount_to_pay"] == Decimal("0")

    with pytest.raises(TrytonStateConflict) as conflict:
        await invoices.delete([draft.invoice], context=gmbh_ctx)
    assert conflict.value.category is Category.CONFLICT
    assert conflict.value.system == "erp"


async def test_missing_required_field_is_a_data_error_with_trytons_message(
    erp: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    with pytest.raises(TrytonUserError) as refused:
        await erp.model("product.template").create(
            [{"name": "No sale unit", "type": "service", "default_uom": 1, "salable": True}]
        )
    assert isinstance(refused.value, PermanentError)
    assert refused.value.category is Category.DATA
    assert 'A value is required for field "Sale UoM"' in refused.value.message
    assert await erp.model("product.template").search([("name", "=", "No sale unit")]) == []


async def test_unknown_model_and_method_are_mapping_errors(erp: TrytonClient) -> None:
    with pytest.raises(MappingError, match=r"no model 'quote2cash\.nothing'"):
        await erp.model("quote2cash.nothing").search([])
    with pytest.raises(MappingError, match="unknown method or no access"):
        await erp.model("party.party").call("no_such_method", [])


async def test_expired_session_is_renewed_once(erp: TrytonClient) -> None:
    await erp.call_without_context("common.db.logout")
    ids = await erp.model("company.company").search([])
    assert len(ids) == 2


async def test_parallel_calls_are_serialised_for_sqlite(erp: TrytonClient) -> None:
    names = [f"Parallel {i}" for i in range(12)]
    results = await asyncio.gather(
        *(erp.model("party.party").create_one({"name": name}) for name in names)
    )
    assert len(set(results)) == len(names)
    assert await erp.model("party.party").search_count([("name", "in", names)]) == len(names)


async def test_wrong_password_is_an_auth_error_without_the_password(
    tryton_server: TrytonEndpoint,
) -> None:
    secret = "not-the-password-4711"
    client = TrytonClient(tryton_server.base_url, tryton_server.database, "q2c_hub", secret)
    with pytest.raises(AuthError) as refused:
        await client.login()
    await client.close()
    assert refused.value.system == "erp"
    assert "q2c_hub" in str(refused.value)
    assert secret not in str(refused.value) and secret not in repr(client)


async def test_stopped_server_is_a_transient_error(tryton_template: object) -> None:
    sandbox = TrytonSandbox()
    endpoint = sandbox.start()
    workdir = sandbox.workdir
    try:
        async with endpoint.client(timeout=5.0) as client:
            assert await client.model("company.company").search_count([]) == 2
            sandbox.stop()
            with pytest.raises(TransientError) as unreachable:
                await client.model("company.company").search([])
            assert unreachable.value.system == "erp"
            assert endpoint.password not in str(unreachable.value)
    finally:
        sandbox.stop()
    assert not workdir.exists()


async def test_a_booking_is_a_confirmed_sale_invoiced_manually(
    erp: TrytonClient, tryton_server: TrytonEndpoint
) -> None:
    setup = tryton_server.setup
    inc = setup.companies["inc"]
    ctx = erp.context_for(company=inc.company)
    party = await erp.model("party.party").create_one(
        {
            "name": "Acme Corp",
            "addresses": [("create", [{"city": "Austin", "country": setup.countries["US"]}])],
        },
        context=ctx,
    )
    [address] = await erp.model("party.address").search([("party", "=", party)], context=ctx)
    sales = erp.model("sale.sale")
    sale = await sales.create_one(
        {
            "company": inc.company,
            "party": party,
            "currency": setup.currencies["USD"],
            "invoice_address": address,
            "shipment_address": address,
            "sale_date": dt.datetime.now(dt.UTC).date(),
            "invoice_method": "manual",
            "reference": "OPP-0001",
            "lines": [
                (
                    "create",
                    [
                        {
                            "type": "line",
                            "product": setup.products["PLAT-SEAT"],
                            "quantity": 5.0,
                            "unit": setup.unit_uom,
                            "unit_price": Decimal("50.00"),
                            "description": "Platform seat",
                            "taxes": [("add", [inc.sales_tax])],
                        }
                    ],
                )
            ],
        },
        context=ctx,
    )
    await sales.execute_button("quote", [sale], context=ctx)
    await sales.execute_button("confirm", [sale], context=ctx)
    [booked] = await sales.read(
        [sale], ["state", "total_amount", "invoice_state", "reference"], context=ctx
    )
    assert booked["state"] == "processing"
    assert booked["total_amount"] == Decimal("250.00")
    assert booked["invoice_state"] == "none"
    assert await sales.search([("reference", "=", "OPP-0001")], context=ctx) == [sale]
