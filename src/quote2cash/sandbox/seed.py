"""Seed the sandbox's product catalog in the CRM and billing, matching ``config/catalog.yaml``.

The ERP's item master (PLAT-SEAT, SUPPORT-PREM, API-CALLS, ONBOARD) comes with the Tryton
template; here Stripe gets a product and per-currency prices under the catalog's lookup keys,
and Salesforce gets Product2 records with their codes and standard price book entries. Seeding
looks up before it creates, so running it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import stripe

from quote2cash.connectors.salesforce.client import SalesforceClient
from quote2cash.sandbox.systems import salesforce_config

if TYPE_CHECKING:
    from stripe.params import PriceCreateParams


@dataclass(frozen=True)
class SeedPrice:
    lookup_key: str
    currency: str
    unit_amount: Decimal
    recurring: bool = True
    metered: bool = False


@dataclass(frozen=True)
class SeedProduct:
    code: str
    name: str
    prices: tuple[SeedPrice, ...]
    crm_list_price: dict[str, Decimal]


def _pair(key: str, usd: str, eur: str, **kw: Any) -> tuple[SeedPrice, SeedPrice]:
    return (
        SeedPrice(f"{key}_usd", "usd", Decimal(usd), **kw),
        SeedPrice(f"{key}_eur", "eur", Decimal(eur), **kw),
    )


CATALOG: tuple[SeedProduct, ...] = (
    SeedProduct(
        "PLAT-SEAT",
        "Platform seat",
        _pair("plat_seat_monthly", "49.00", "45.00"),
        {"USD": Decimal("49.00"), "EUR": Decimal("45.00")},
    ),
    SeedProduct(
        "SUPPORT-PREM",
        "Premium support",
        _pair("support_prem_monthly", "199.00", "179.00"),
        {"USD": Decimal("199.00"), "EUR": Decimal("179.00")},
    ),
    SeedProduct(
        "API-CALLS",
        "API calls (metered)",
        _pair("api_calls_metered", "0.002", "0.0018", metered=True),
        {"USD": Decimal("0.00"), "EUR": Decimal("0.00")},
    ),
    SeedProduct(
        "ONBOARD",
        "Onboarding (one time)",
        _pair("onboarding_once", "1500.00", "1400.00", recurring=False),
        {"USD": Decimal("1500.00"), "EUR": Decimal("1400.00")},
    ),
)
CRM_ONLY = (
    SeedProduct(
        "PLATFORM-PRO",
        "Platform Pro bundle (seats + premium support)",
        (),
        {"USD": Decimal("248.00"), "EUR": Decimal("224.00")},
    ),
)


def seed_stripe(base_url: str, api_key: str) -> dict[str, str]:
    """Products and prices in the Stripe emulator; returns lookup key -> price id."""
    client = stripe.StripeClient(api_key=api_key, base_addresses={"api": base_url})
    existing = {
        p.lookup_key: p.id
        for p in client.v1.prices.list(params={"limit": 100}).auto_paging_iter()
        if p.lookup_key
    }
    meter_id: str | None = None
    for product in CATALOG:
        missing = [p for p in product.prices if p.lookup_key not in existing]
        if not missing:
            continue
        prod = client.v1.products.create(
            params={"name": product.name, "metadata": {"code": product.code}},
            options={"idempotency_key": f"q2c-seed-product-{product.code}"},
        )
        for price in missing:
            cents = price.unit_amount * 100
            params: dict[str, Any] = {
                "product": prod.id,
                "currency": price.currency,
                "lookup_key": price.lookup_key,
                "nickname": f"{product.code} {price.currency.upper()}",
                "unit_amount_decimal": str(cents.normalize()),
            }
            if price.recurring:
                params["recurring"] = {"interval": "month"}
                if price.metered:
                    meter_id = meter_id or _api_calls_meter(client)
                    params["recurring"].update(usage_type="metered", meter=meter_id)
                    # what usage records name the item by, and count it in (docs/usage.md)
                    params["metadata"] = {"meter": "api_calls", "unit": "call"}
            created = client.v1.prices.create(
                params=cast("PriceCreateParams", params),
                options={"idempotency_key": f"q2c-seed-price-{price.lookup_key}"},
            )
            existing[price.lookup_key] = created.id
    return existing


def _api_calls_meter(client: stripe.StripeClient) -> str:
    """The billing meter that metered prices are backed by (event name ``api_calls``)."""
    for meter in client.v1.billing.meters.list(params={"limit": 100}).auto_paging_iter():
        if meter.event_name == "api_calls" and meter.status == "active":
            return str(meter.id)
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "API calls",
            "event_name": "api_calls",
            "default_aggregation": {"formula": "sum"},
        },
        options={"idempotency_key": "q2c-seed-meter-api_calls"},
    )
    return str(meter.id)


async def seed_salesforce(instance_url: str, ca_file: str) -> dict[str, str]:
    """Product2 records with codes and standard price book entries; returns code -> Product2 Id."""
    config = salesforce_config(instance_url, ca_file)
    async with SalesforceClient(config) as sf:
        book = await sf.query_all("SELECT Id FROM Pricebook2 WHERE IsStandard = true")
        pricebook_id = str(book[0]["Id"])
        rows = await sf.query_all("SELECT Id, ProductCode FROM Product2")
        products = {str(r["ProductCode"]): str(r["Id"]) for r in rows if r.get("ProductCode")}
        for product in (*CATALOG, *CRM_ONLY):
            if product.code in products:
                continue
            pid = await sf.create(
                "Product2", {"Name": product.name, "ProductCode": product.code, "IsActive": True}
            )
            products[product.code] = pid
            for currency, price in product.crm_list_price.items():
                await sf.create(
                    "PricebookEntry",
                    {
                        "Pricebook2Id": pricebook_id,
                        "Product2Id": pid,
                        "UnitPrice": price,
                        "CurrencyIsoCode": currency,
                        "IsActive": True,
                    },
                )
        return products
