"""Field ownership end to end: a CRM account edit reaches the ERP and billing for the fields the
CRM owns; ERP-owned fields (tax registration, legal entity) edited in the CRM are not propagated,
raise an ownership warning in the exception queue and get the ERP's values written back.

Every outcome is read from the system itself: Tryton over JSON-RPC, Stripe through its SDK,
Salesforce through simple-salesforce.
"""

from __future__ import annotations

import pytest

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from quote2cash.engine.exceptions import list_exceptions
from quote2cash.engine.queries import failed_events
from quote2cash.flows.intake import poll_accounts

ERP_VAT = "DE811569869"
EDITED_VAT = "DE136695976"


async def settle_with_accounts(hub: Hub, rounds: int = 8) -> None:
    """The hub's polls, account changes included, until nothing new arrives."""
    for _ in range(rounds):
        assert hub.systems.crm is not None
        await hub.settle(rounds=1)
        new = await poll_accounts(hub.runtime, hub.systems.crm)
        report = await hub.worker.drain()
        if new == 0 and report.processed == 0:
            return


async def erp_vat_ids(world: World) -> set[str]:
    """The tax registrations of the ERP's party for the account (any name it has had)."""
    async with world.erp_client() as erp:
        parties = await erp.model("party.party").search(
            [("name", "in", ["Ownership Werke GmbH", "Ownership Werke AG"])]
        )
        assert len(parties) == 1, parties
        codes = await erp.model("party.identifier").search_read(
            [("party", "=", parties[0]), ("type", "!=", None)], ["code"]
        )
    return {str(c["code"]) for c in codes}


async def test_crm_edits_propagate_for_crm_fields_and_warn_for_erp_fields(
    world: World, hub: Hub
) -> None:
    desk = world.desk
    products = sf_products(desk)
    account = desk.account(
        "Ownership Werke GmbH",
        currency="EUR",
        BillingStreet="Leopoldstraße 12",
        BillingCity="München",
        BillingPostalCode="80331",
        BillingCountryCode="DE",
        BillingCountry="Germany",
        VAT_Number__c=ERP_VAT,
    )
    desk.deal(
        account,
        "EUR",
        [Line(products["PLAT-SEAT"], 2, "45.00")],
        name="Ownership platform",
        Contract_Number__c="C-OWN-1",
    )
    await settle_with_accounts(hub)
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    onboarded = desk.sf.Account.get(account)
    assert onboarded["Legal_Entity__c"] == "DE" and onboarded["ERP_Customer_Number__c"]

    # A sales rep may not touch the fields the hub manages (field-level security) ...
    from simple_salesforce.exceptions import SalesforceMalformedRequest

    with pytest.raises(SalesforceMalformedRequest) as refused:
        desk.sales_rep().Account.update(account, {"VAT_Number__c": EDITED_VAT})
    assert "INVALID_FIELD_FOR_INSERT_UPDATE" in str(refused.value)
    desk.sales_rep().Account.update(account, {"Name": "Ownership Werke AG"})
    # ... an administrator (a data load) can: CRM-owned and ERP-owned fields in one edit.
    desk.sf.Account.update(
        account,
        {
            "BillingStreet": "Karlsplatz 3",
            "Phone": "+49 89 123456",
            "VAT_Number__c": EDITED_VAT,
            "Legal_Entity__c": "US",
        },
    )
    # A deal closes before the hub sees the account change: its onboarding writes the new
    # name and street to the ERP but keeps the ERP's VAT id (ownership, not the poll's order),
    # and warns of the legal entity it writes back over the edit.
    desk.deal(
        account,
        "EUR",
        [Line(products["PLAT-SEAT"], 1, "45.00")],
        name="Ownership platform 2",
        Contract_Number__c="C-OWN-2",
    )
    await hub.settle()
    assert await erp_vat_ids(world) == {ERP_VAT}
    await settle_with_accounts(hub)

    # ERP: the new name and street arrived; the VAT id the CRM showed did not.
    async with world.erp_client() as erp:
        [party] = await erp.model("party.party").search_read(
            [("name", "=", "Ownership Werke AG")], ["addresses", "identifiers"]
        )
        streets = await erp.model("party.address").read(party["addresses"], ["street"])
        codes = await erp.model("party.identifier").read(party["identifiers"], ["code"])
        assert not await erp.model("party.party").search([("name", "=", "Ownership Werke GmbH")])
    assert any("Karlsplatz 3" in (a["street"] or "") for a in streets), streets
    vat_codes = {c["code"] for c in codes if not str(c["code"]).startswith("q2c-")}
    assert ERP_VAT in vat_codes and EDITED_VAT not in vat_codes, vat_codes

    # Billing: the customer carries the new name and address.
    client = world.stripe()
    customer = client.v1.customers.retrieve(onboarded["Billing_Customer_Id__c"])
    assert customer.name == "Ownership Werke AG"
    assert customer.address is not None and customer.address.line1 == "Karlsplatz 3"

    # CRM: the ERP's values are written back over the edit.
    shown = desk.sf.Account.get(account)
    assert (shown["VAT_Number__c"], shown["Legal_Entity__c"]) == (ERP_VAT, "DE")
    assert shown["Name"] == "Ownership Werke AG"

    # The exception queue: one ownership warning per refused field, with both values.
    warnings = [e for e in list_exceptions(hub.runtime) if e.category == "ownership"]
    reasons = sorted(w.reason or "" for w in warnings)
    assert len(reasons) == 2, reasons
    entity_reason, tax_reason = reasons
    assert "'legal_entity'" in entity_reason and "'US'" in entity_reason
    assert "'DE'" in entity_reason
    assert "'tax_ids'" in tax_reason and EDITED_VAT in tax_reason and ERP_VAT in tax_reason
    assert all(account in r and "owned by erp" in r for r in reasons)
    assert {w.recoverability for w in warnings} == {"data_correction"}
    others = [e for e in failed_events(hub.runtime) if e.category != "ownership"]
    assert others == [], [e.last_error for e in others]
