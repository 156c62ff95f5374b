"""The people of a lifecycle at work: a sales rep in Salesforce (simple-salesforce), the
customer and the billing team in Stripe (the stripe SDK). Nothing here talks to the hub, except
the customer's usage feed when ``USAGE_VIA_HUB`` is on (it posts usage to ``POST /v1/usage``)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import stripe

from lifecycle.generator import UNMAPPED, Action, Do, Lifecycle
from lifecycle.world import LifecycleWorld

USAGE_VIA_HUB = os.environ.get("Q2C_LIFECYCLE_USAGE_VIA_HUB", "1") != "0"
"""Metered usage goes through the hub's pipeline (``POST /v1/usage``: intake, ledger, the posting
flow); ``Q2C_LIFECYCLE_USAGE_VIA_HUB=0`` reports it straight to billing's meter instead."""
USAGE_FEED = "usage-feed"
"""The operator whose API token the customer's usage feed uses."""

GOOD_CARD = "pm_card_visa"
DECLINING_CARD = "pm_card_chargeDeclined"
PLACES = {
    "US": {
        "BillingStreet": "100 State St",
        "BillingCity": "Madison",
        "BillingState": "WI",
        "BillingPostalCode": "53703",
        "BillingCountryCode": "US",
        "BillingCountry": "United States",
    },
    "DE": {
        "BillingStreet": "Leopoldstraße 12",
        "BillingCity": "München",
        "BillingPostalCode": "80331",
        "BillingCountryCode": "DE",
        "BillingCountry": "Germany",
    },
}


def company_place(lc: Lifecycle) -> dict[str, str]:
    """The company's billing address: its entity's city, a street and postal code of its own."""
    place = dict(PLACES[lc.entity])
    n = lc.place_number
    if lc.entity == "DE":
        place.update(BillingStreet=f"Leopoldstraße {n + 1}", BillingPostalCode=f"80{n:03d}")
    else:
        place.update(BillingStreet=f"{n + 100} State St", BillingPostalCode=f"53{n:03d}")
    return place


@dataclass
class Running:
    """One lifecycle under way: what its people know of it so far."""

    lifecycle: Lifecycle
    start: int
    clock: str = ""
    customer: str = ""
    account: str = ""
    opportunity: str = ""
    seats: int | None = None
    amendments: int = 0
    done: list[Action] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Actions a person could not do (e.g. the CRM subscription never appeared)."""

    @property
    def booked(self) -> bool:
        return not self.lifecycle.unmapped


class Actors:
    def __init__(self, world: LifecycleWorld) -> None:
        self.world = world
        self.sf = world.sf
        self.client = world.stripe()
        self.pricebook = self.sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")[
            "records"
        ][0]["Id"]
        self._entries: dict[tuple[str, str], str] = {}
        self._products: dict[str, str] = {}

    # --- the org admin ---

    def ensure_unmapped_product(self) -> None:
        if UNMAPPED in self.products():
            return
        from lifecycle.generator import LIST_PRICES

        product = self.sf.Product2.create(
            {"Name": "Legacy analytics add-on", "ProductCode": UNMAPPED, "IsActive": True}
        )["id"]
        for currency, price in LIST_PRICES[UNMAPPED].items():
            self.sf.PricebookEntry.create(
                {
                    "Pricebook2Id": self.pricebook,
                    "Product2Id": product,
                    "UnitPrice": str(price),
                    "IsActive": True,
                    "CurrencyIsoCode": currency,
                }
            )
        self._products.clear()
        self._entries.clear()

    def products(self) -> dict[str, str]:
        if not self._products:
            rows = self.sf.query("SELECT Id, ProductCode FROM Product2")["records"]
            self._products = {str(r["ProductCode"]): str(r["Id"]) for r in rows}
        return self._products

    def _entry(self, code: str, currency: str) -> str:
        if not self._entries:
            rows = self.sf.query_all(
                "SELECT Id, CurrencyIsoCode, Product2.ProductCode FROM PricebookEntry "
                f"WHERE Pricebook2Id = '{self.pricebook}'"
            )["records"]
            for row in rows:
                code_of = str((row.get("Product2") or {}).get("ProductCode"))
                self._entries[(code_of, row["CurrencyIsoCode"])] = row["Id"]
        return self._entries[(code, currency)]

    # --- the start: sign-up, account, deal ---

    def sign_up(self, lc: Lifecycle) -> Running:
        """The customer signs up in billing on its own test clock; the rep opens the account
        (carrying the billing customer id, as for self-serve customers) and wins the deal."""
        now = int(datetime.now(UTC).replace(microsecond=0).timestamp())
        run = Running(lc, now, seats=lc.seats)
        run.clock = str(
            self.client.v1.test_helpers.test_clocks.create(
                params={"frozen_time": now, "name": lc.name}
            ).id
        )
        place = company_place(lc)
        address = {
            "line1": place["BillingStreet"],
            "city": place["BillingCity"],
            "postal_code": place["BillingPostalCode"],
            "country": place["BillingCountryCode"],
        }
        if "BillingState" in place:
            address["state"] = place["BillingState"]
        params: Any = {"name": lc.name, "test_clock": run.clock, "address": address}
        if self.world.collection == "charge_automatically":
            params.update(
                payment_method=GOOD_CARD, invoice_settings={"default_payment_method": GOOD_CARD}
            )
        run.customer = str(self.client.v1.customers.create(params=params).id)
        run.account = str(
            self.sf.Account.create(
                {
                    "Name": lc.name,
                    "CurrencyIsoCode": lc.currency,
                    "Type": "Customer - Direct",
                    "Billing_Customer_Id__c": run.customer,
                    **place,
                }
            )["id"]
        )
        return run

    def close_deal(self, run: Running) -> None:
        lc = run.lifecycle
        opportunity = str(
            self.sf.Opportunity.create(
                {
                    "Name": f"{lc.name} subscription",
                    "AccountId": run.account,
                    "StageName": "Proposal/Price Quote",
                    "CloseDate": datetime.fromtimestamp(run.start, UTC).date().isoformat(),
                    "CurrencyIsoCode": lc.currency,
                    "Pricebook2Id": self.pricebook,
                    "Contract_Number__c": lc.contract_number,
                }
            )["id"]
        )
        for line in lc.lines:
            self.sf.OpportunityLineItem.create(
                {
                    "OpportunityId": opportunity,
                    "PricebookEntryId": self._entry(line.code, lc.currency),
                    "Quantity": line.quantity,
                    "UnitPrice": str(line.unit_price(lc.currency)),
                    **({"Discount": str(line.discount)} if line.discount else {}),
                }
            )
        self.sf.Opportunity.update(opportunity, {"StageName": "Closed Won"})
        run.opportunity = opportunity

    # --- the lifecycle's actions ---

    def act(self, run: Running, action: Action) -> None:
        self._advance_to(run, run.start + action.day * 86400)
        if action.do is Do.PAY:
            self._pay(run, action.method or "card")
        elif action.do is Do.AMEND and action.then is not None:
            assert action.quantity is not None
            self._amend_reversed(run, action.quantity, action.then)
        elif action.do is Do.AMEND:
            assert action.quantity is not None
            self._amend(run, action.quantity)
        elif action.do is Do.REFUND:
            self._refund(run, action.share or Decimal(1))
        elif action.do is Do.USAGE:
            self._usage(run, action.quantity or 0)
        elif action.do is Do.RENEW:
            self._renew(run)
        elif action.do is Do.CANCEL_NOW:
            self._amend(run, 0)
        elif action.do is Do.CANCEL_AT_TERM_END:
            self._amend(run, 0, at_term_end=True)
        run.done.append(action)

    def _clock_time(self, run: Running) -> int:
        return int(self.client.v1.test_helpers.test_clocks.retrieve(run.clock).frozen_time)

    def _advance_to(self, run: Running, when: int) -> None:
        if when <= self._clock_time(run):
            return
        self.client.v1.test_helpers.test_clocks.advance(run.clock, params={"frozen_time": when})
        for _ in range(200):
            if self.client.v1.test_helpers.test_clocks.retrieve(run.clock).status == "ready":
                return
            time.sleep(0.05)
        raise AssertionError(f"test clock of {run.lifecycle.name} never became ready")

    def _subscription(self, run: Running) -> Any:
        subs = self.client.v1.subscriptions.list(
            params={"customer": run.customer, "status": "all", "limit": 10}
        ).data
        return subs[0] if subs else None

    def _pay(self, run: Running, method: str) -> None:
        for invoice in self.client.v1.invoices.list(
            params={"customer": run.customer, "status": "open", "limit": 100}
        ).auto_paging_iter():
            if method in ("declined_then_card", "declined"):
                try:
                    self.client.v1.invoices.pay(
                        invoice.id, params={"payment_method": DECLINING_CARD}
                    )
                except stripe.CardError:
                    run.declined.append(str(invoice.number))
                else:
                    raise AssertionError(f"the declining card paid {invoice.id}")
                if method == "declined":
                    continue
            if method == "bank_transfer":
                self.client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
            else:
                self.client.v1.invoices.pay(invoice.id, params={"payment_method": GOOD_CARD})

    def _crm_subscription(self, run: Running) -> str | None:
        opp = self.sf.Opportunity.get(run.opportunity)
        billing_id = opp.get("Subscription_Id__c")
        if not billing_id:
            return None
        rows = self.sf.query(
            f"SELECT Id FROM Subscription__c WHERE Billing_Subscription_Id__c = '{billing_id}'"
        )["records"]
        return str(rows[0]["Id"]) if rows else None

    def _amend_reversed(self, run: Running, first: int, then: int) -> None:
        """Two seat changes filed in the wrong order: request n+1 (first -> then) before
        request n (seats -> first)."""
        seats, number = run.seats, run.amendments + 1
        run.amendments, run.seats = number, first
        self._amend(run, then)
        run.amendments, run.seats = number - 1, seats
        self._amend(run, first)
        run.amendments, run.seats = number + 1, then

    def _amend(self, run: Running, quantity: int, *, at_term_end: bool = False) -> None:
        """The rep files the next numbered seat-change request on the CRM subscription."""
        crm_sub = self._crm_subscription(run)
        if crm_sub is None or run.seats is None:
            raise AssertionError(f"{run.lifecycle.name}: no CRM subscription to amend yet")
        effective = datetime.fromtimestamp(self._clock_time(run), UTC)
        if at_term_end:
            sub = self._subscription(run)
            effective = datetime.fromtimestamp(
                int(sub["items"]["data"][0]["current_period_end"]), UTC
            )
        run.amendments += 1
        self.sf.Amendment_Request__c.create(
            {
                "Subscription__c": crm_sub,
                "Product__c": self.products()["PLAT-SEAT"],
                "New_Quantity__c": quantity,
                "Effective_Date__c": effective.date().isoformat(),
                "Status__c": "Approved",
                "Amendment_Number__c": run.amendments,
                "Previous_Quantity__c": run.seats,
                "Proration__c": "always_invoice",
            }
        )
        if quantity:
            run.seats = quantity

    def _refund(self, run: Running, share: Decimal) -> None:
        """Billing gives back ``share`` of the newest card payment not refunded yet."""
        for charge in self.client.v1.charges.list(
            params={"customer": run.customer, "limit": 100}
        ).auto_paging_iter():
            if charge.status != "succeeded" or charge.amount_refunded or not charge.paid:
                continue
            amount = int(Decimal(charge.amount) * share)
            if amount <= 0:
                continue
            self.client.v1.refunds.create(
                params={"charge": charge.id, "amount": amount, "reason": "requested_by_customer"}
            )
            return

    def _usage(self, run: Running, calls: int) -> None:
        if USAGE_VIA_HUB:
            self._usage_through_the_hub(run, calls)
            return
        self.client.v1.billing.meter_events.create(
            params={
                "event_name": "api_calls",
                "payload": {"stripe_customer_id": run.customer, "value": str(calls)},
                "timestamp": self._clock_time(run),
            }
        )

    def _usage_through_the_hub(self, run: Running, calls: int) -> None:
        """The customer's usage feed: one record per report, keyed by lifecycle and action."""
        sub = self._subscription(run)
        if sub is None:
            run.failures.append(f"usage of {calls} calls: no billing subscription to report on")
            return
        at = datetime.fromtimestamp(self._clock_time(run), UTC)
        record = {
            "id": f"{run.lifecycle.name}-{len(run.done)}",
            "subscription": str(sub["id"]),
            "meter": "api_calls",
            "quantity": str(calls),
            "unit": "call",
            "timestamp": at.isoformat(),
        }
        body = json.dumps({"source": "lifecycle", "records": [record]}).encode()
        request = urllib.request.Request(
            f"{self.world.base_url}/v1/usage",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self._usage_token()}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                outcome = json.loads(answer.read())
        except urllib.error.HTTPError as error:
            run.failures.append(f"usage {record['id']}: the hub answered {error.code}")
            return
        if int(outcome.get("accepted", 0)) != 1:
            run.failures.append(f"usage {record['id']}: not accepted ({outcome})")

    def _usage_token(self) -> str:
        """An operator's API token for the usage feed, made once per world."""
        token = self.world.usage_token
        if token is None:
            from support.identity import first_admin, new_operator, token_of

            admin = first_admin(self.world.runtime, "lifecycle-admin")
            feed = new_operator(self.world.runtime, admin, USAGE_FEED, "operator")
            token = token_of(self.world.runtime, feed)
            self.world.usage_token = token
        return token

    def _renew(self, run: Running) -> None:
        sub = self._subscription(run)
        if sub is None:
            return
        end = int(sub["items"]["data"][0]["current_period_end"])
        self._advance_to(run, end + int(timedelta(hours=1).total_seconds()))
