"""The people around the hub: sales reps in Salesforce, customers and the billing team in Stripe.

They use each system's own client (simple-salesforce, the stripe SDK), never the hub's
connectors, so what the hub does is seen from outside, as the business would see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import stripe

from quote2cash.canonical import Money
from quote2cash.demo.book import UNMAPPED_CODE, UNMAPPED_PRICES, DemoAccount, DemoDeal, Payer

DECLINING_CARD = "pm_card_chargeDeclined"
GOOD_CARD = "pm_card_visa"


class SalesOrg:
    """Sales reps and the Salesforce admin, through simple-salesforce."""

    def __init__(self, sf: Any) -> None:
        self.sf = sf
        self.pricebook = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][
            0
        ]["Id"]
        self.accounts: dict[str, str] = {}
        self.opportunities: dict[str, str] = {}
        self._entries: dict[tuple[str, str], str] = {}

    def add_legacy_product(self) -> None:
        """The admin keeps selling an old add-on nobody mapped in the hub's catalog."""
        product = self.sf.Product2.create(
            {"Name": "Legacy analytics add-on", "ProductCode": UNMAPPED_CODE, "IsActive": True}
        )["id"]
        for currency, price in UNMAPPED_PRICES.items():
            self.sf.PricebookEntry.create(
                {
                    "Pricebook2Id": self.pricebook,
                    "Product2Id": product,
                    "UnitPrice": str(price),
                    "IsActive": True,
                    "CurrencyIsoCode": currency,
                }
            )

    def _entry(self, code: str, currency: str) -> str:
        if not self._entries:
            rows = self.sf.query(
                "SELECT Id, CurrencyIsoCode, Product2.ProductCode FROM PricebookEntry "
                f"WHERE Pricebook2Id = '{self.pricebook}'"
            )["records"]
            for row in rows:
                product = row.get("Product2") or {}
                self._entries[(str(product.get("ProductCode")), row["CurrencyIsoCode"])] = row["Id"]
        return self._entries[(code, currency)]

    def open_account(self, account: DemoAccount, billing_customer: str | None = None) -> str:
        place = account.place
        values: dict[str, Any] = {
            "Name": account.name,
            "CurrencyIsoCode": account.currency,
            "Type": "Customer - Direct",
            "Industry": account.industry,
            "NumberOfEmployees": account.employees,
            "BillingStreet": place.street,
            "BillingCity": place.city,
            "BillingPostalCode": place.postal_code,
            "BillingCountryCode": place.country,
            "BillingCountry": place.country_name,
        }
        if place.state:
            values["BillingState"] = place.state
        if account.vat_id:
            values["VAT_Number__c"] = account.vat_id
        if billing_customer:
            values["Billing_Customer_Id__c"] = billing_customer
        account_id = str(self.sf.Account.create(values)["id"])
        self.accounts[account.key] = account_id
        return account_id

    def close_deal(self, deal: DemoDeal, closed_on: date) -> str:
        """Opportunity with its lines, then Closed Won: what a rep does at the end of a deal."""
        currency = deal.account.currency
        opportunity = str(
            self.sf.Opportunity.create(
                {
                    "Name": deal.name,
                    "AccountId": self.accounts[deal.account.key],
                    "StageName": "Proposal/Price Quote",
                    "CloseDate": closed_on.isoformat(),
                    "CurrencyIsoCode": currency,
                    "Pricebook2Id": self.pricebook,
                    "Contract_Number__c": deal.contract_number,
                }
            )["id"]
        )
        for line in deal.lines:
            self.sf.OpportunityLineItem.create(
                {
                    "OpportunityId": opportunity,
                    "PricebookEntryId": self._entry(line.code, currency),
                    "Quantity": line.quantity,
                    "UnitPrice": str(line.unit_price(currency)),
                    **({"Discount": str(line.discount)} if line.discount else {}),
                }
            )
        self.sf.Opportunity.update(opportunity, {"StageName": "Closed Won"})
        self.opportunities[deal.contract_number] = opportunity
        return opportunity


@dataclass
class PaymentRound:
    card: int = 0
    bank_transfer: int = 0
    declined: list[str] = field(default_factory=list)
    left_open: int = 0

    @property
    def paid(self) -> int:
        return self.card + self.bank_transfer


class Customers:
    """Customers sign up on the website and pay their invoices, through the stripe SDK."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client
        self.declined_once: set[str] = set()

    def sign_up(self, account: DemoAccount, clock: str) -> str:
        """A self-serve sign-up: the billing customer exists before any deal (on a test clock)."""
        place = account.place
        params: Any = {
            "name": account.name,
            "test_clock": clock,
            "address": {
                k: v
                for k, v in {
                    "line1": place.street,
                    "city": place.city,
                    "postal_code": place.postal_code,
                    "state": place.state,
                    "country": place.country,
                }.items()
                if v
            },
            "metadata": {"signed_up_via": "website"},
        }
        customer = self.client.v1.customers.create(params=params)
        return str(customer.id)

    def open_invoices(self) -> list[Any]:
        return list(
            self.client.v1.invoices.list(params={"status": "open", "limit": 100}).auto_paging_iter()
        )

    def pay_open_invoices(
        self, payer_of: dict[str, DemoAccount], *, declines: bool
    ) -> PaymentRound:
        """Each customer settles its open invoices its own way; one card is declined."""
        outcome = PaymentRound()
        for invoice in self.open_invoices():
            account = payer_of.get(str(invoice.customer_name or ""))
            payer = account.payer if account else Payer.CARD
            if payer is Payer.LATE:
                outcome.left_open += 1
                continue
            if payer is Payer.DECLINED:
                if not declines or invoice.id in self.declined_once:
                    outcome.left_open += 1
                    continue
                self.declined_once.add(str(invoice.id))
                try:
                    self.client.v1.invoices.pay(
                        invoice.id, params={"payment_method": DECLINING_CARD}
                    )
                except stripe.CardError:
                    outcome.declined.append(str(invoice.number or invoice.id))
                    continue
                raise RuntimeError(f"the declining test card paid invoice {invoice.id}")
            if payer is Payer.BANK_TRANSFER:
                self.client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
                outcome.bank_transfer += 1
            else:
                self.client.v1.invoices.pay(invoice.id, params={"payment_method": GOOD_CARD})
                outcome.card += 1
        return outcome


@dataclass(frozen=True)
class GrantedRefund:
    number: str
    amount: Money


def refund_one_card_payment(client: stripe.StripeClient, share: int = 4) -> GrantedRefund | None:
    """A goodwill refund: 1/``share`` of the newest invoice paid by card is given back."""
    for paid in client.v1.invoice_payments.list(
        params={"status": "paid", "limit": 100}
    ).auto_paging_iter():
        intent = paid.payment.payment_intent
        if not intent:
            continue
        invoice = client.v1.invoices.retrieve(str(paid.invoice))
        amount = int(invoice.amount_paid) // share
        if amount <= 0:
            continue
        client.v1.refunds.create(
            params={
                "payment_intent": str(intent),
                "amount": amount,
                "reason": "requested_by_customer",
            }
        )
        return GrantedRefund(
            str(invoice.number), Money.from_stripe_amount(amount, str(invoice.currency))
        )
    return None


class BillingTeam:
    """Runs the simulated period: one Stripe test clock per self-serve customer."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client
        self.clocks: list[str] = []

    def new_clock(self, name: str, start: datetime) -> str:
        clock = self.client.v1.test_helpers.test_clocks.create(
            params={"frozen_time": int(start.timestamp()), "name": name}
        )
        self.clocks.append(str(clock.id))
        return str(clock.id)

    def advance_all(self, to: datetime) -> None:
        for clock in self.clocks:
            self.client.v1.test_helpers.test_clocks.advance(
                clock, params={"frozen_time": int(to.timestamp())}
            )


def months_later(start: datetime, months: int) -> datetime:
    """``start`` plus ``months`` calendar months (the day kept, up to the 28th), plus an hour so
    a monthly renewal due at that instant has happened."""
    month0 = start.month - 1 + months
    moved = start.replace(
        year=start.year + month0 // 12, month=month0 % 12 + 1, day=min(start.day, 28)
    )
    return moved + timedelta(hours=1)
