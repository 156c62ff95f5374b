"""The legacy ERP's own rules through the connector: credit limit, VAT registration, faults."""

from __future__ import annotations

import pytest
import requests
import zeep
import zeep.exceptions

from contract.erp import builders
from quote2cash.canonical import Address, Money
from quote2cash.connectors.legacy_erp import LegacyErp
from quote2cash.engine.errors import ApprovalRequiredError, Category, DataError
from quote2cash.sandbox.legacy_erp import LegacyErpEndpoint

PARIS = Address(line1="1 Rue de Rivoli", city="Paris", postal_code="75001", country="FR")


def soap(endpoint: LegacyErpEndpoint, password: str | None = None) -> zeep.Client:
    session = requests.Session()
    session.auth = (endpoint.username, password or endpoint.password)
    return zeep.Client(f"{endpoint.base_url}/?wsdl", transport=zeep.Transport(session=session))


async def test_an_order_over_the_credit_limit_is_refused_for_approval_naming_both(
    erp: LegacyErp, endpoint: LegacyErpEndpoint, unique: str
) -> None:
    party = await erp.upsert_customer(
        builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
    )
    soap(endpoint).service.SetCreditLimit(party, "150.00")
    first = builders.order(unique, party, "USD", "PLAT-SEAT")
    assert await erp.book_order(first, legal_entity="US", idempotency_key="o1" + unique)
    invoice = builders.invoice(unique, party, "USD", "PLAT-SEAT")
    await erp.post_invoice(invoice, legal_entity="US", idempotency_key="i" + unique)
    # 87.65 owed on the invoice + 99.99 on the order: over 150.00
    second = builders.order(unique, party, "USD", "PLAT-SEAT", number=f"SO-2-{unique}")
    with pytest.raises(ApprovalRequiredError) as refused:
        await erp.book_order(second, legal_entity="US", idempotency_key="o2" + unique)
    message = str(refused.value)
    assert f"SO-2-{unique}" in message and "Client.CreditLimitExceeded" in message
    assert "187.64" in message and "150.00" in message
    soap(endpoint).service.SetCreditLimit(party, "200.00")
    assert await erp.book_order(second, legal_entity="US", idempotency_key="o2" + unique)


async def test_the_credit_limit_finance_sets_is_read_with_the_customer_in_its_currency(
    erp: LegacyErp, endpoint: LegacyErpEndpoint, unique: str
) -> None:
    """The ERP owns the credit limit: the hub reads it (for the CRM's read-only field), never
    writes it; an upsert of the customer leaves it as finance set it."""
    party = await erp.upsert_customer(
        builders.customer(unique, "DE"), legal_entity="DE", idempotency_key=unique
    )
    soap(endpoint).service.SetCreditLimit(party, "25000.00")
    customer = await erp.get_customer(party)
    assert customer.credit_limit == Money("25000.00", "EUR")
    renamed = builders.customer(unique, "DE", name=f"Renamed {unique}")
    await erp.upsert_customer(renamed, legal_entity="DE", idempotency_key=f"r-{unique}")
    again = await erp.get_customer(party)
    assert (again.name, again.credit_limit) == (f"Renamed {unique}", Money("25000.00", "EUR"))


async def test_a_de_customer_abroad_in_the_eu_needs_a_vat_registration(
    erp: LegacyErp, unique: str
) -> None:
    abroad = builders.customer(unique, address=PARIS)
    with pytest.raises(DataError) as refused:
        await erp.upsert_customer(abroad, legal_entity="DE", idempotency_key=unique)
    assert "Client.TaxRegistrationRequired" in str(refused.value)
    assert f"cus-{unique}" in str(refused.value) and "tax_id" in str(refused.value)
    # the US entity has no such rule; a registered French customer is fine for DE
    assert await erp.upsert_customer(
        builders.customer(f"us{unique}", address=PARIS), legal_entity="US", idempotency_key=unique
    )
    registered = builders.customer(unique, address=PARIS, tax_ids=[("eu_vat", "FR40303265045")])
    party = await erp.upsert_customer(registered, legal_entity="DE", idempotency_key=unique)
    assert (await erp.get_customer(party)).tax_ids[0].value == "FR40303265045"


async def test_numbers_are_the_erps_own_per_entity(erp: LegacyErp, unique: str) -> None:
    us = await erp.upsert_customer(
        builders.customer("a" + unique, "US"), legal_entity="US", idempotency_key="a" + unique
    )
    de = await erp.upsert_customer(
        builders.customer("b" + unique, "DE"), legal_entity="DE", idempotency_key="b" + unique
    )
    assert us.startswith("C-US-") and de.startswith("C-DE-")
    posted = await erp.post_invoice(
        builders.invoice("a" + unique, us, "USD", "ONBOARD"),
        legal_entity="US",
        idempotency_key=unique,
    )
    assert posted.number.startswith("INV-US-") and posted.total == Money("87.65", "USD")


def test_zeep_reads_the_wsdl_and_faults_carry_a_code_and_the_record(
    endpoint: LegacyErpEndpoint,
) -> None:
    client = soap(endpoint)
    operations = set(client.service._binding._operations)
    assert {"UpsertCustomer", "CreateSalesOrder", "FindDocument", "ListInvoices"} <= operations
    items = client.service.ListItems(0, 10)
    assert {item.code for item in items} >= {"PLAT-SEAT", "ONBOARD"}
    with pytest.raises(zeep.exceptions.Fault) as fault:
        client.service.GetCustomer("C-US-999999")
    assert str(fault.value.code).endswith("Client.UnknownCustomer")
    assert "C-US-999999" in str(fault.value.message)


def test_a_wrong_password_is_a_401_that_never_echoes_it(endpoint: LegacyErpEndpoint) -> None:
    wrong = "not-the-password-xyz"
    answer = requests.post(
        f"{endpoint.base_url}/",
        data=b"<x/>",
        auth=(endpoint.username, wrong),
        headers={"Content-Type": "text/xml"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert wrong not in answer.text and endpoint.password not in answer.text
    assert requests.get(f"{endpoint.base_url}/?wsdl", timeout=10).status_code == 401


async def test_a_bad_record_from_soap_is_a_data_error_not_a_crash(
    erp: LegacyErp, unique: str
) -> None:
    with pytest.raises(DataError) as refused:
        await erp.upsert_customer(
            builders.customer(unique, tax_ids=[("eu_vat", "DE12")]),
            legal_entity="DE",
            idempotency_key=unique,
        )
    assert refused.value.category is Category.DATA and "DE12" in str(refused.value)
    assert (await erp.check()).authenticated
