"""ERP contract: customers (idempotent upsert, round trip, bad data) and the item master."""

from __future__ import annotations

import pytest

from contract.erp import builders
from contract.erp.harness import ErpWorld
from quote2cash.canonical import Address, TaxIdValue
from quote2cash.connectors.roles import Erp
from quote2cash.engine.errors import Category, DataError, MappingError, PermanentError


async def test_same_key_twice_is_one_customer(erp: Erp, unique: str) -> None:
    customer = builders.customer(unique)
    first = await erp.upsert_customer(customer, legal_entity="DE", idempotency_key=f"k-{unique}")
    again = await erp.upsert_customer(customer, legal_entity="DE", idempotency_key=f"k-{unique}")
    assert again == first
    stored = await erp.get_customer(first)
    assert stored.global_id == customer.global_id
    assert stored.external_ids["erp"] == first


async def test_same_global_id_with_another_key_updates_never_duplicates(
    erp: Erp, unique: str
) -> None:
    customer = builders.customer(unique)
    first = await erp.upsert_customer(customer, legal_entity="DE", idempotency_key=f"a-{unique}")
    renamed = customer.model_copy(
        update={"name": f"Renamed {unique}", "email": f"ap-{unique}@example.com"}
    )
    second = await erp.upsert_customer(renamed, legal_entity="DE", idempotency_key=f"b-{unique}")
    assert second == first
    stored = await erp.get_customer(first)
    assert (stored.name, stored.email) == (f"Renamed {unique}", f"ap-{unique}@example.com")


async def test_without_global_id_the_key_alone_identifies_the_customer(
    erp: Erp, unique: str
) -> None:
    anonymous = builders.customer(unique, global_id=None)
    first = await erp.upsert_customer(anonymous, legal_entity="US", idempotency_key=f"k-{unique}")
    again = await erp.upsert_customer(anonymous, legal_entity="US", idempotency_key=f"k-{unique}")
    other = await erp.upsert_customer(anonymous, legal_entity="US", idempotency_key=f"o-{unique}")
    assert again == first
    assert other != first


async def test_customer_round_trips_address_tax_id_and_email(erp: Erp, unique: str) -> None:
    customer = builders.customer(unique, tax_ids=[("eu_vat", "DE811569869")])
    erp_id = await erp.upsert_customer(customer, legal_entity="DE", idempotency_key=unique)
    stored = await erp.get_customer(erp_id)
    assert stored.name == customer.name
    assert stored.email == customer.email
    assert stored.address is not None and customer.address is not None
    assert (stored.address.line1, stored.address.city, stored.address.country) == (
        customer.address.line1,
        customer.address.city,
        customer.address.country,
    )
    assert stored.address.postal_code == customer.address.postal_code
    assert [t.type for t in stored.tax_ids] == ["eu_vat"]
    assert stored.tax_ids[0].value.replace(" ", "") == "DE811569869"


async def test_an_address_change_is_applied_on_upsert(erp: Erp, unique: str) -> None:
    customer = builders.customer(unique)
    erp_id = await erp.upsert_customer(customer, legal_entity="DE", idempotency_key=unique)
    moved = Address(line1="Neue Strasse 9", city="Hamburg", postal_code="20095", country="DE")
    await erp.upsert_customer(
        customer.model_copy(update={"address": moved}),
        legal_entity="DE",
        idempotency_key=f"move-{unique}",
    )
    stored = await erp.get_customer(erp_id)
    assert stored.address is not None
    assert (stored.address.line1, stored.address.city) == ("Neue Strasse 9", "Hamburg")


async def test_unknown_country_is_a_data_error_naming_customer_and_field(
    erp: Erp, unique: str
) -> None:
    nowhere = Address(line1="1 Nowhere Road", city="Atlantis", country="ZZ")
    customer = builders.customer(unique, address=nowhere)
    with pytest.raises(DataError) as refused:
        await erp.upsert_customer(customer, legal_entity="DE", idempotency_key=unique)
    message = str(refused.value)
    assert f"cus-{unique}" in message
    assert "address.country" in message and "'ZZ'" in message
    assert refused.value.system == "erp"


async def test_an_invalid_vat_number_is_a_data_error_naming_the_customer(
    erp: Erp, unique: str
) -> None:
    customer = builders.customer(unique, tax_ids=[TaxIdValue(type="eu_vat", value="DE000")])
    with pytest.raises(DataError) as refused:
        await erp.upsert_customer(customer, legal_entity="DE", idempotency_key=unique)
    assert f"cus-{unique}" in str(refused.value)
    assert "DE000" in str(refused.value)


async def test_unknown_legal_entity_is_a_mapping_error(erp: Erp, unique: str) -> None:
    with pytest.raises(MappingError, match="'XX'"):
        await erp.upsert_customer(
            builders.customer(unique), legal_entity="XX", idempotency_key=unique
        )


@pytest.mark.parametrize("missing_id", ["987654321", "not-an-id"])
async def test_get_customer_of_a_missing_id_is_a_data_error(erp: Erp, missing_id: str) -> None:
    with pytest.raises(PermanentError) as refused:
        await erp.get_customer(missing_id)
    assert refused.value.category is Category.DATA
    assert missing_id in str(refused.value) and "customer" in str(refused.value)


async def test_list_items_gives_the_item_master_with_codes_as_skus(
    erp: Erp, erp_world: ErpWorld
) -> None:
    items = await erp.list_items()
    by_sku = {item.sku: item for item in items}
    assert set(erp_world.item_codes) <= set(by_sku)
    for code in erp_world.item_codes:
        assert by_sku[code].global_id is None
        assert by_sku[code].external_ids.get("erp")
        assert by_sku[code].name
    assert len({item.external_ids["erp"] for item in items}) == len(items)


async def test_list_items_returns_every_item_past_the_page_size(erp_world: ErpWorld) -> None:
    async with erp_world.connect() as erp:
        unpaged = await erp.list_items()
    async with erp_world.connect(page_size=1) as erp:
        paged = await erp.list_items()
    assert len(unpaged) >= 2
    assert [p.external_ids for p in paged] == [p.external_ids for p in unpaged]


async def test_one_company_in_two_legal_entities_is_two_customers_each_with_its_registration(
    erp: Erp, erp_world: ErpWorld, unique: str
) -> None:
    """How the hub serves a customer buying through two entities: one ERP customer per entity,
    each keyed by its own global id, with that jurisdiction's tax registration, each selling in
    its own entity (the hub's ``masterdata.entity_customers``)."""
    german = builders.customer(unique, "DE", tax_ids=[("eu_vat", "DE811569869")])
    american = german.model_copy(
        update={
            "global_id": f"cus-{unique}-us",
            "tax_ids": (TaxIdValue(type="us_ein", value="04-2103594"),),
        }
    )
    de_id = await erp.upsert_customer(german, legal_entity="DE", idempotency_key=f"de-{unique}")
    us_id = await erp.upsert_customer(american, legal_entity="US", idempotency_key=f"us-{unique}")
    assert de_id != us_id
    stored = {e: await erp.get_customer(i) for e, i in (("DE", de_id), ("US", us_id))}
    assert {e: [t.type for t in c.tax_ids] for e, c in stored.items()} == {
        "DE": ["eu_vat"],
        "US": ["us_ein"],
    }
    assert stored["US"].tax_ids[0].value.replace("-", "") == "042103594"
    assert stored["DE"].name == stored["US"].name == german.name
    code = erp_world.item_codes[0]
    for entity, erp_id in (("DE", de_id), ("US", us_id)):
        order = builders.order(f"{unique}-{entity}", erp_id, erp_world.currencies[entity], code)
        booked = await erp.book_order(
            order, legal_entity=entity, idempotency_key=f"o-{entity}-{unique}"
        )
        assert booked
