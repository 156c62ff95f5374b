"""The Salesforce side of the CRM contract: our emulator, seeded the way a sales rep would.

Implements ``harness.CrmHarness``; Salesforce's objects and ``__c`` fields stay in this file and
in the connector's own tests (tests/integration/salesforce_connector).

Data goes in through the third-party ``simple-salesforce`` client (Account, Product2, standard
PricebookEntry, Opportunity with lines, then Closed Won) and is read back through the connector.

The emulator runs with its default custom schema plus what the hub's managed package is assumed
to add for this suite (the emulator's packaged schema has no amendment object):

* ``Amendment_Request__c``: a sales rep's request to change the seats of a running subscription
  (Subscription__c lookup, Product__c lookup, New_Quantity__c, Effective_Date__c, Status__c
  Draft/Approved/Applied/Rejected/Failed, optional Amendment_Number__c, Previous_Quantity__c,
  Billing_Subscription_Item_Id__c, Proration__c, Reason__c);
* ``Account.VAT_Number__c`` and ``Account.Billing_Email__c``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import requests
import yaml

from quote2cash.canonical import Address, Money
from quote2cash.connectors.roles import InvoiceStanding, InvoiceState
from quote2cash.connectors.salesforce import SalesforceConfig, SalesforceCrm
from quote2cash.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SALES_PASSWORD,
    SALES_USERNAME,
    RunningEmulator,
    run_in_thread,
)
from quote2cash.sandbox.systems import salesforce_config

from .harness import Line, PublishedInvoice

__all__ = ["Line", "SalesforceDesk", "SalesforceHarness", "http_session", "running_emulator"]

ASSUMED_SCHEMA: dict[str, Any] = {
    "objects": {
        "Amendment_Request__c": {
            "label": "Amendment Request",
            "key_prefix": "a03",
            "fields": {
                "Subscription__c": {
                    "type": "reference",
                    "reference_to": "Subscription__c",
                    "relationship_name": "Subscription__r",
                    "child_relationship_name": "Amendment_Requests__r",
                    "required": True,
                },
                "Product__c": {
                    "type": "reference",
                    "reference_to": "Product2",
                    "relationship_name": "Product__r",
                },
                "Billing_Subscription_Item_Id__c": {"type": "string", "length": 255},
                "Amendment_Number__c": {"type": "int", "precision": 4},
                "Previous_Quantity__c": {"type": "double", "precision": 12, "scale": 0},
                "New_Quantity__c": {
                    "type": "double",
                    "precision": 12,
                    "scale": 0,
                    "required": True,
                },
                "Effective_Date__c": {"type": "date", "required": True},
                "Proration__c": {
                    "type": "picklist",
                    "values": ["create_prorations", "always_invoice", "none"],
                },
                "Reason__c": {"type": "textarea"},
                "Status__c": {
                    "type": "picklist",
                    "values": ["Draft", "Approved", "Applied", "Rejected", "Failed"],
                    "restricted": True,
                },
            },
        }
    },
    "fields": {
        "Account": {
            "VAT_Number__c": {"type": "string", "length": 32, "read_only_for_users": True},
            "Billing_Email__c": {"type": "email"},
        }
    },
}

EMULATOR_DEFAULTS: dict[str, Any] = {
    "daily_api_limit": 15000,
    "api_usage": 0,
    "session_ttl_seconds": 7200,
    "query_batch_size": 2000,
}


def write_test_schema(folder: Path) -> Path:
    """The emulator's packaged custom schema plus ``ASSUMED_SCHEMA``, as one YAML file."""
    packaged = resources.files("quote2cash.sandbox.salesforce").joinpath("default_schema.yaml")
    document = yaml.safe_load(packaged.read_text("utf-8"))
    document.setdefault("objects", {}).update(ASSUMED_SCHEMA["objects"])
    for object_name, fields in ASSUMED_SCHEMA["fields"].items():
        document.setdefault("fields", {}).setdefault(object_name, {}).update(fields)
    path = folder / "schema.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return path


@contextmanager
def running_emulator(folder: Path) -> Iterator[RunningEmulator]:
    running = run_in_thread(schema_path=write_test_schema(folder))
    try:
        yield running
    finally:
        running.stop()


def http_session(ca_path: str) -> requests.Session:
    """requests trusting only the emulator's CA (REQUESTS_CA_BUNDLE must not win)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_path
    return session


class SalesforceDesk:
    """What a sales rep and an org admin do in Salesforce, through simple-salesforce."""

    def __init__(self, emulator: RunningEmulator, http: requests.Session) -> None:
        self.emulator = emulator
        self.http = http
        self.reset()
        self.relogin()
        self.standard_pricebook = self.sf.query(
            "SELECT Id FROM Pricebook2 WHERE IsStandard = true"
        )["records"][0]["Id"]

    # --- admin endpoints of the emulator ---

    def admin(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(
            method, f"{self.emulator.instance_url}/_emulator/{action}", json=body
        )
        assert response.status_code == 200, response.text
        return response.json()

    def reset(self) -> None:
        self.admin("POST", "reset")
        self.admin("PATCH", "config", EMULATOR_DEFAULTS)

    def _token(self, username: str = DEFAULT_USERNAME, password: str = DEFAULT_PASSWORD) -> str:
        response = self.http.post(
            f"{self.emulator.instance_url}/services/oauth2/token",
            data={
                "grant_type": "password",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "username": username,
                "password": password,
            },
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def relogin(self) -> None:
        from simple_salesforce import Salesforce

        self.sf = Salesforce(
            instance_url=self.emulator.instance_url, session_id=self._token(), session=self.http
        )

    def sales_rep(self) -> Any:
        """A simple-salesforce session of a sales rep (not the integration user): the fields the
        hub manages are read-only to them."""
        from simple_salesforce import Salesforce

        token = self._token(SALES_USERNAME, SALES_PASSWORD)
        return Salesforce(
            instance_url=self.emulator.instance_url, session_id=token, session=self.http
        )

    def api_usage(self) -> int:
        return int(self.admin("GET", "config")["api_usage"])

    # --- a sales rep's work ---

    def account(self, name: str, currency: str = "EUR", **fields: Any) -> str:
        values = {"Name": name, "CurrencyIsoCode": currency, **fields}
        return str(self.sf.Account.create(values)["id"])

    def product(self, code: str, name: str, prices: dict[str, str], **fields: Any) -> str:
        """A product with a standard price in each currency (list prices, sales may differ)."""
        product_id = str(
            self.sf.Product2.create(
                {"Name": name, "ProductCode": code, "IsActive": True, **fields}
            )["id"]
        )
        for currency, price in prices.items():
            self.sf.PricebookEntry.create(
                {
                    "Pricebook2Id": self.standard_pricebook,
                    "Product2Id": product_id,
                    "UnitPrice": price,
                    "IsActive": True,
                    "CurrencyIsoCode": currency,
                }
            )
        return product_id

    def deal(
        self,
        account_id: str,
        currency: str,
        lines: Sequence[Line],
        *,
        name: str = "Deal",
        close_date: date = date(2026, 11, 20),
        won: bool = True,
        **fields: Any,
    ) -> str:
        """An opportunity with product lines, then (by default) moved to Closed Won."""
        opportunity_id = str(
            self.sf.Opportunity.create(
                {
                    "Name": name,
                    "AccountId": account_id,
                    "StageName": "Proposal/Price Quote",
                    "CloseDate": close_date.isoformat(),
                    "CurrencyIsoCode": currency,
                    "Pricebook2Id": self.standard_pricebook,
                    **fields,
                }
            )["id"]
        )
        for line in lines:
            entry = self.sf.query(
                "SELECT Id FROM PricebookEntry WHERE Product2Id = "
                f"'{line.product_id}' AND CurrencyIsoCode = '{currency}'"
            )["records"][0]["Id"]
            self.sf.OpportunityLineItem.create(
                {
                    "OpportunityId": opportunity_id,
                    "PricebookEntryId": entry,
                    "Quantity": line.quantity,
                    "UnitPrice": line.unit_price,
                    "ServiceDate": line.service_date and line.service_date.isoformat(),
                    **({"Discount": line.discount} if line.discount is not None else {}),
                }
            )
        if won:
            self.sf.Opportunity.update(opportunity_id, {"StageName": "Closed Won"})
        return opportunity_id

    def many_won_deals(self, account_id: str, product_id: str, count: int) -> list[str]:
        """``count`` closed-won one-line deals, loaded in bulk (sObject Collections)."""
        entry = self.sf.query(
            f"SELECT Id FROM PricebookEntry WHERE Product2Id = '{product_id}' "
            "AND CurrencyIsoCode = 'USD'"
        )["records"][0]["Id"]
        ids: list[str] = []
        for start in range(0, count, 200):
            batch = [
                {
                    "attributes": {"type": "Opportunity"},
                    "Name": f"Bulk {n}",
                    "AccountId": account_id,
                    "StageName": "Prospecting",
                    "CloseDate": "2026-11-01",
                    "CurrencyIsoCode": "USD",
                }
                for n in range(start, min(start + 200, count))
            ]
            ids += [r["id"] for r in self._collection("POST", batch)]
        for start in range(0, count, 200):
            chunk = ids[start : start + 200]
            self._collection(
                "POST",
                [
                    {
                        "attributes": {"type": "OpportunityLineItem"},
                        "OpportunityId": i,
                        "PricebookEntryId": entry,
                        "Quantity": 1,
                        "UnitPrice": "10.01",
                    }
                    for i in chunk
                ],
            )
            self._collection(
                "PATCH",
                [
                    {"attributes": {"type": "Opportunity"}, "Id": i, "StageName": "Closed Won"}
                    for i in chunk
                ],
            )
        return ids

    def many_onboarded_accounts(self, count: int) -> list[str]:
        """``count`` accounts carrying a hub global id, loaded in bulk (sObject Collections)."""
        ids: list[str] = []
        for start in range(0, count, 200):
            batch = [
                {
                    "attributes": {"type": "Account"},
                    "Name": f"Onboarded {n}",
                    "CurrencyIsoCode": "EUR",
                    "Hub_Global_Id__c": f"CUS-bulk-{n}",
                }
                for n in range(start, min(start + 200, count))
            ]
            ids += [r["id"] for r in self._collection("POST", batch)]
        return ids

    def _collection(self, method: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = self.sf.restful(
            "composite/sobjects", method=method, json={"allOrNone": True, "records": records}
        )
        assert results is not None and all(r["success"] for r in results), results
        return list(results)

    def subscription(self, account_id: str, quantity: int, billing_id: str | None = None) -> str:
        return str(
            self.sf.Subscription__c.create(
                {
                    "Account__c": account_id,
                    "Quantity__c": quantity,
                    "Status__c": "Active",
                    "Billing_Subscription_Id__c": billing_id,
                }
            )["id"]
        )

    def request_seat_change(
        self,
        subscription_id: str,
        product_id: str,
        new_quantity: int,
        effective: date,
        *,
        status: str = "Approved",
        **fields: Any,
    ) -> str:
        return str(
            self.sf.Amendment_Request__c.create(
                {
                    "Subscription__c": subscription_id,
                    "Product__c": product_id,
                    "New_Quantity__c": new_quantity,
                    "Effective_Date__c": effective.isoformat(),
                    "Status__c": status,
                    **fields,
                }
            )["id"]
        )

    def approve(self, request_id: str) -> None:
        self.sf.Amendment_Request__c.update(request_id, {"Status__c": "Approved"})

    def invoices(self, number: str) -> list[dict[str, Any]]:
        return list(
            self.sf.query(
                "SELECT Id, Status__c, Amount__c, Balance__c FROM Invoice__c "
                f"WHERE Invoice_Number__c = '{number}'"
            )["records"]
        )

    def missing_account_id(self) -> str:
        gone = self.account("Soon gone")
        self.sf.Account.delete(gone)
        return gone

    # --- sales operations ---

    def merge_accounts(self, master: str, loser: str) -> dict[str, Any]:
        """Merge ``loser`` into ``master`` as sales operations would: the SOAP partner API's
        ``merge()`` (no REST equivalent), on simple-salesforce's session."""
        envelope = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:urn="urn:partner.soap.sforce.com" '
            'xmlns:urn1="urn:sobject.partner.soap.sforce.com">'
            "<soapenv:Header><urn:SessionHeader>"
            f"<urn:sessionId>{self.sf.session_id}</urn:sessionId>"
            "</urn:SessionHeader></soapenv:Header>"
            "<soapenv:Body><urn:merge><urn:request>"
            f"<urn:masterRecord><urn1:type>Account</urn1:type><urn1:Id>{master}</urn1:Id>"
            "</urn:masterRecord>"
            f"<urn:recordToMergeIds>{loser}</urn:recordToMergeIds>"
            "</urn:request></urn:merge></soapenv:Body></soapenv:Envelope>"
        )
        response = self.sf.session.post(
            f"https://{self.sf.sf_instance}/services/Soap/u/{self.sf.sf_version}",
            data=envelope.encode("utf-8"),
            headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'},
        )
        assert response.status_code == 200, response.text
        from xml.etree import ElementTree

        result = ElementTree.fromstring(response.content).find(
            ".//{urn:partner.soap.sforce.com}result"
        )
        assert result is not None, response.text
        found = {child.tag.rsplit("}", 1)[-1]: child.text for child in result}
        assert found.get("success") == "true", response.text
        return found

    def duplicate_flag(self, account_id: str) -> tuple[str | None, str | None]:
        """The account's duplicate marks: (Q2C_Duplicate_Of__c, Q2C_Merge_Status__c)."""
        row = self.sf.Account.get(account_id)
        return row["Q2C_Duplicate_Of__c"], row["Q2C_Merge_Status__c"]


class SalesforceHarness:
    """The contract's view of the Salesforce implementation: how to build it, seed it, break it."""

    name = "salesforce"
    page_size = 200
    """The smallest page Salesforce honours (its batchSize floor)."""

    def __init__(self, emulator: RunningEmulator, http: requests.Session) -> None:
        self.emulator = emulator
        self.desk = SalesforceDesk(emulator, http)
        self._open: list[SalesforceCrm] = []
        self._invoiced: str | None = None

    def config(self, **overrides: Any) -> SalesforceConfig:
        return salesforce_config(self.emulator.instance_url, self.emulator.ca_path, **overrides)

    def crm(self, **overrides: Any) -> SalesforceCrm:
        crm = SalesforceCrm(self.config(**overrides))
        self._open.append(crm)
        return crm

    async def close(self) -> None:
        for crm in self._open:
            await crm.close()
        self._open.clear()

    # --- breaking it ---

    bad_secret = "wrong-secret-7f3a9c"

    def crm_with_bad_secret(self) -> SalesforceCrm:
        return self.crm(client_secret=self.bad_secret)

    def exhaust_daily_limit(self) -> None:
        used = self.desk.api_usage()
        self.desk.admin("PATCH", "config", {"daily_api_limit": used})

    def expire_sessions(self) -> None:
        self.desk.admin("POST", "sessions/expire")
        self.desk.relogin()

    # --- a sales rep's work, in the contract's terms ---

    def account(
        self,
        name: str,
        currency: str = "EUR",
        *,
        address: Address | None = None,
        erp_customer_number: str | None = None,
    ) -> str:
        fields: dict[str, Any] = {}
        if address is not None:
            street = [address.line1] + ([address.line2] if address.line2 else [])
            fields |= {
                "BillingStreet": "\n".join(street),
                "BillingCity": address.city,
                "BillingPostalCode": address.postal_code,
                "BillingCountryCode": address.country,
            }
        if erp_customer_number is not None:
            fields["ERP_Customer_Number__c"] = erp_customer_number
        return self.desk.account(name, currency, **fields)

    def onboarded_account(self, name: str, hub_id: str, *, tax_id: str | None = None) -> str:
        fields: dict[str, Any] = {"Hub_Global_Id__c": hub_id}
        if tax_id is not None:
            fields["VAT_Number__c"] = tax_id
        return self.desk.account(name, "EUR", **fields)

    def many_onboarded_accounts(self, count: int) -> list[str]:
        return self.desk.many_onboarded_accounts(count)

    def edit_account(self, account_id: str, *, name: str) -> None:
        self.desk.sales_rep().Account.update(account_id, {"Name": name})

    def account_financials(self, account_id: str) -> tuple[str | None, str | None]:
        record = self.desk.sf.Account.get(account_id)
        return record["VAT_Number__c"], record["Legal_Entity__c"]

    def product(self, code: str, name: str, prices: dict[str, str]) -> str:
        return self.desk.product(code, name, prices)

    def deal(
        self,
        account_id: str,
        currency: str,
        lines: list[Line],
        *,
        name: str = "Deal",
        close_date: date = date(2026, 11, 20),
        won: bool = True,
        contract_number: str | None = None,
    ) -> str:
        fields = {} if contract_number is None else {"Contract_Number__c": contract_number}
        return self.desk.deal(
            account_id, currency, lines, name=name, close_date=close_date, won=won, **fields
        )

    def many_won_deals(self, account_id: str, product_id: str, count: int) -> list[str]:
        return self.desk.many_won_deals(account_id, product_id, count)

    def delete_deal(self, deal_id: str) -> None:
        self.desk.sf.Opportunity.delete(deal_id)

    def missing_account_id(self) -> str:
        return self.desk.missing_account_id()

    def subscription(self, account_id: str, quantity: int, billing_id: str | None = None) -> str:
        return self.desk.subscription(account_id, quantity, billing_id)

    def request_seat_change(
        self,
        subscription_id: str,
        product_id: str,
        new_quantity: int,
        effective: date,
        *,
        approved: bool = True,
    ) -> str:
        status = "Approved" if approved else "Draft"
        return self.desk.request_seat_change(
            subscription_id, product_id, new_quantity, effective, status=status
        )

    def approve(self, request_id: str) -> None:
        self.desk.approve(request_id)

    # --- duplicates ---

    def merge_accounts(self, master: str, loser: str) -> None:
        self.desk.merge_accounts(master, loser)

    def duplicate_flag(self, account_id: str) -> tuple[str | None, str | None]:
        survivor, status = self.desk.duplicate_flag(account_id)
        return survivor, None if status is None else status.lower().replace(" ", "_")

    # --- status write-back targets ---

    def invoice_status(self, number: str, standing: str, amount: str) -> InvoiceState:
        """An invoice's state, of an account the CRM holds, owing all of ``amount`` (USD)."""
        if self._invoiced is None:
            self._invoiced = self.desk.account("Invoiced Co", "USD")
        return self._invoice_state(number, standing, amount, self._invoiced)

    def invoice_status_the_crm_refuses(self, number: str) -> tuple[InvoiceState, str]:
        """An invoice's state naming an account the CRM does not hold, and the field it blames."""
        return self._invoice_state(number, "open", "1.00", "001000000000000AAA"), "Account__c"

    @staticmethod
    def _invoice_state(number: str, standing: str, amount: str, account: str) -> InvoiceState:
        money = Money(Decimal(amount), "USD")
        return InvoiceState(number, account, money, money, InvoiceStanding(standing), None)

    def stored_invoices(self, number: str) -> list[dict[str, Any]]:
        """The raw Invoice__c records (the connector's own tests read its fields)."""
        return self.desk.invoices(number)

    def published_invoices(self, number: str) -> list[PublishedInvoice]:
        return [
            PublishedInvoice(
                record["Status__c"].lower().replace(" ", "_"), Decimal(str(record["Amount__c"]))
            )
            for record in self.stored_invoices(number)
        ]
