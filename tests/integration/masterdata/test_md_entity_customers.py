"""One ERP customer per legal entity: which global id keys a customer's ERP customer in each
entity, on the real store (SQLite; PostgreSQL through the suite's database fixture where set)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quote2cash.canonical import Customer
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.entities import load_entities
from quote2cash.masterdata.entity_customers import EntityCustomers, tax_ids_for
from quote2cash.masterdata.xref import Kind, XrefStore

ENTITIES = load_entities(packaged_config_dir() / "entities.yaml")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[XrefStore]:
    runtime = Runtime.open(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    yield XrefStore(runtime.engine, runtime.clock)
    runtime.close()


def test_the_first_entity_is_the_customer_itself_and_another_gets_its_own_id(
    store: XrefStore,
) -> None:
    customers = EntityCustomers(store, ENTITIES.config.entities)
    golden = store.ensure_global_id(Kind.CUSTOMER, "crm", "001A")
    assert customers.account_for(golden, "DE") == golden
    assert customers.account_for(golden, "DE") == golden
    us = customers.account_for(golden, "US")
    assert us != golden and us.startswith("CUS-")
    assert customers.account_for(golden, "US") == us
    assert customers.entities_of(golden) == {"DE": golden, "US": us}
    assert customers.customer_of(us) == golden and customers.customer_of(golden) == golden


def test_a_customer_with_an_erp_customer_from_before_keeps_it_in_its_decided_entity(
    store: XrefStore,
) -> None:
    customers = EntityCustomers(store, ENTITIES.config.entities)
    golden = store.ensure_global_id(Kind.CUSTOMER, "crm", "001B")
    store.link(golden, "erp", "17")
    # its first deal of the new kind is in USD; its ERP customer was made for Q2C GmbH
    us = customers.account_for(golden, "US", home="DE")
    assert us != golden
    assert customers.account_for(golden, "DE", home="DE") == golden
    assert store.local_id(golden, "erp") == "17" and store.local_id(us, "erp") is None


def test_merged_customers_keep_their_entity_customers(store: XrefStore) -> None:
    customers = EntityCustomers(store, ENTITIES.config.entities)
    first = store.ensure_global_id(Kind.CUSTOMER, "crm", "001C")
    second = store.ensure_global_id(Kind.CUSTOMER, "crm", "001D")
    assert customers.account_for(first, "DE") == first
    assert customers.account_for(second, "DE") == second
    second_us = customers.account_for(second, "US")
    store.merge(first, second, actor="steward", reason="same company")
    assert customers.account_for(first, "DE") == first
    assert customers.account_for(second, "US") == second_us
    assert customers.account_for(first, "US") == second_us
    assert customers.entities_of(second) == {"DE": first, "US": second_us}
    assert customers.customer_of(second_us) == first


def test_each_entity_keeps_only_tax_ids_of_no_other_entitys_jurisdiction() -> None:
    customer = Customer(
        name="Nordlicht",
        tax_ids=(("eu_vat", "DE811569869"), ("us_ein", "04-2103594"), ("gb_vat", "GB980780684")),
    )
    assert [t.type for t in tax_ids_for(customer, "DE", ENTITIES)] == ["eu_vat", "gb_vat"]
    assert [t.type for t in tax_ids_for(customer, "US", ENTITIES)] == ["us_ein", "gb_vat"]
