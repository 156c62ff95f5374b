"""Where an object lives in its own system, as a URL the operator can open (the sandbox's
emulators in a demo, the real tenants in production); no URL when the base is not configured."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

STRIPE_COLLECTIONS: Final = {
    "cus": "customers",
    "sub": "subscriptions",
    "in": "invoices",
    "pi": "payment_intents",
    "ch": "charges",
    "cn": "credit_notes",
    "re": "refunds",
    "price": "prices",
    "prod": "products",
    "si": "subscription_items",
}
SALESFORCE_OBJECTS: Final = {
    "001": "Account",
    "003": "Contact",
    "006": "Opportunity",
    "01t": "Product2",
    "801": "Order",
}
STRIPE_ID: Final = re.compile(r"^([a-z]+)_[A-Za-z0-9]+$")
SALESFORCE_ID: Final = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


@dataclass(frozen=True)
class ObjectLinks:
    """Base URLs: Salesforce instance, Stripe API, Tryton web client (each optional)."""

    crm_url: str | None = None
    billing_url: str | None = None
    erp_url: str | None = None
    crm_api_version: str = "62.0"

    def url(self, system: str, local_id: str) -> str | None:
        if system == "crm" and self.crm_url and SALESFORCE_ID.match(local_id):
            sobject = SALESFORCE_OBJECTS.get(local_id[:3])
            if sobject is None:
                return None
            return (
                f"{self.crm_url.rstrip('/')}/services/data/v{self.crm_api_version}"
                f"/sobjects/{sobject}/{quote(local_id, safe='')}"
            )
        if system == "billing" and self.billing_url:
            found = STRIPE_ID.match(local_id)
            collection = STRIPE_COLLECTIONS.get(found.group(1)) if found else None
            if collection is None:
                return None
            return f"{self.billing_url.rstrip('/')}/v1/{collection}/{quote(local_id, safe='')}"
        if system == "erp" and self.erp_url:
            return f"{self.erp_url.rstrip('/')}#record={quote(local_id, safe='')}"
        return None
