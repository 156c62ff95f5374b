"""The ``Billing`` role on Stripe: customers, subscriptions, amendments, usage, invoices, events.

Guarantees: every POST carries the step's idempotency key as ``Idempotency-Key`` (operations
that need several POSTs derive sub-keys ``{key}:create``, ``{key}:update``), so any step can be
run again without a second customer, subscription or charge. Failures leave as the engine's
errors (see ``client``). Choices, documented once here:

- Collection: ``StripeConfig.collection_method``, default ``charge_automatically`` with the
  customer's default payment method and Stripe's default ``payment_behavior``
  (``allow_incomplete`` in the API version the SDK pins; both are left out of the request, which
  older fakes refuse): a declined first payment is a business outcome (the subscription is
  ``incomplete``, Stripe's events tell the rest), never an error of the step. ``send_invoice``
  sends ``collection_method`` and ``days_until_due``.
- Billing cycle: anchored at creation (Stripe's default); the price's interval sets its length.
- Renewal: Stripe renews by itself. ``renew`` withdraws a scheduled cancellation
  (``cancel_at_period_end`` / ``cancel_at``) so the subscription renews; a canceled subscription
  cannot be renewed (ConflictError: create a new one).
- Cancel now: ``DELETE`` with ``prorate`` and ``invoice_now``, so unused time becomes a credit on
  a final invoice; at period end: ``cancel_at_period_end=true``. Both are no-ops when done.
- Card declines: in ``create_subscription`` see above; ``pay_invoice`` returns a failed Payment
  with the decline code; elsewhere a CardError is a ``CardDeclined`` (DataError).
- Events: ``list_events`` reads oldest first after a cursor (see its docstring).
- Tax: a subscription's ``tax_rates`` become Stripe tax rates found by
  ``metadata['q2c_tax_code']`` (created once, with a key derived from code and percentage, never
  duplicated) and are set as its ``default_tax_rates``; an invoice's lines carry the rate billing
  taxed them at. A rate whose percentage or inclusiveness differs from Stripe's copy under the
  same code is a ConflictError (Stripe rates are immutable: give the new rate a new code).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

import stripe
from pydantic import SecretStr

from quote2cash.canonical import (
    Amendment,
    Customer,
    Invoice,
    Money,
    MoneyError,
    Payment,
    PricePlan,
    ProrationBehavior,
    RecordValidationError,
    Subscription,
    SubscriptionItem,
    TaxRate,
    UsageRecord,
)
from quote2cash.connectors.closing import ClosesOnExit
from quote2cash.connectors.roles import (
    BillingEvent,
    LedgerEntry,
    LedgerKind,
    Page,
    PostedUsage,
    RejectedRecord,
    SystemCheck,
    UsageLine,
    UsagePosting,
)
from quote2cash.connectors.stripe import mapping
from quote2cash.connectors.stripe.client import (
    CardDeclined,
    InvalidRequest,
    ResourceMissing,
    StripeApi,
    plain,
)
from quote2cash.connectors.stripe.config import CollectionMethod, CustomerLookup, StripeConfig
from quote2cash.engine.errors import (
    AuthError,
    ConflictError,
    DataError,
    IntegrationError,
    MappingError,
    TransientError,
)

__all__ = ["StripeBilling", "verify_webhook"]

T = TypeVar("T")
BILLING: Final = "billing"
_ENDED: Final = frozenset({"canceled", "incomplete_expired"})
_ID_PREFIXES: Final = ("price_", "plan_")
_PAGE: Final = 100


@dataclass(frozen=True)
class _MeterTarget:
    meter_id: str
    event_name: str
    customer_key: str
    value_key: str
    customer: str


def _opts(idempotency_key: str) -> Any:
    return {"idempotency_key": idempotency_key}


def _canonical(what: str, build: Callable[[], T], *, system: str = BILLING) -> T:
    """Map a Stripe object, turning a shape the canonical model refuses into a MappingError."""
    try:
        return build()
    except (RecordValidationError, MoneyError, ValueError, KeyError, TypeError) as exc:
        raise MappingError(
            f"cannot map {what} to the canonical model: {exc}", system=system
        ) from None


def verify_webhook(
    payload: bytes,
    signature_header: str,
    secret: str | SecretStr,
    tolerance: int = 300,
    *,
    system: str = BILLING,
) -> BillingEvent:
    """Check a delivery's ``Stripe-Signature`` and return its event; the secret is never shown.

    Raises AuthError for a missing, malformed or wrong signature or a timestamp older than
    ``tolerance`` seconds (a possible replay), DataError for a body that is not a Stripe event.
    ``secret`` may be a ``SecretStr``.
    """
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    try:
        event = stripe.Webhook.construct_event(payload, signature_header, key, tolerance)
    except stripe.SignatureVerificationError as error:
        text = (error.user_message or "").lower()
        if "tolerance" in text:
            reason = f"its timestamp is more than {tolerance} s old (stale or replayed delivery)"
        elif "unable to extract" in text or not signature_header:
            reason = "the Stripe-Signature header is missing or malformed"
        else:
            reason = "no signature matches the payload (wrong signing secret or altered body)"
        raise AuthError(f"webhook rejected: {reason}", system=system) from None
    except ValueError:
        raise DataError("webhook payload is not valid JSON", system=system) from None
    body = plain(event)
    if not body.get("id") or not body.get("type"):
        raise DataError("webhook payload is not a Stripe event (no id or type)", system=system)
    return _canonical(f"Stripe event {body['id']}", lambda: mapping.billing_event(body))


class StripeBilling(ClosesOnExit):
    """``connectors.roles.Billing`` on one Stripe account; ``async with`` closes its HTTP pool."""

    def __init__(self, config: StripeConfig, *, system: str = BILLING) -> None:
        self.system = system
        self.config = config
        self.api = StripeApi(config, system=system)
        self._sdk = self.api.sdk
        self._usage_targets: dict[str, tuple[str, str, str, str]] = {}
        self._meter_targets: dict[tuple[str, str], _MeterTarget] = {}
        self._meters_read: dict[str, dict[str, Any]] = {}
        self._prices_read: dict[str, dict[str, Any]] = {}
        self._coupons: set[str] = set()
        self._tax_rates: dict[str, TaxRate] = {}
        self._tax_rate_ids: dict[str, str] = {}

    @classmethod
    def for_sandbox(cls, base_url: str, **overrides: object) -> StripeBilling:
        """A connector for a local emulator or localstripe (``StripeConfig.for_sandbox``)."""
        return cls(StripeConfig.for_sandbox(base_url, **overrides))

    def __repr__(self) -> str:
        return f"StripeBilling(system={self.system!r}, base_url={self.config.base_url!r})"

    async def close(self) -> None:
        await self.api.close()

    async def _call(self, operation: str, request: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        return plain(await self.api.call(operation, request))

    # --- customers ----------------------------------------------------------------------------

    async def upsert_customer(self, customer: Customer, *, idempotency_key: str) -> str:
        """Find by ``metadata['hub_global_id']`` (or the known billing id) and update, else create.

        Returns the Stripe customer id. Search lags writes on real Stripe; a retried step is still
        safe because the create carries ``{key}:create``.
        """
        params: Any = mapping.customer_params(customer)
        existing = customer.id_in(self.system)
        if existing is None:
            found = await self._find_customer(customer)
            if found is not None:
                existing = str(found["id"])
                if found.get("tax_exempt") not in (None, "none") and "tax_exempt" not in params:
                    params["tax_exempt"] = "none"
        if existing is not None:
            target = existing
            updated = await self._call(
                f"update customer {target} ({customer.label})",
                lambda: self._sdk.v1.customers.update_async(
                    target, params=params, options=_opts(f"{idempotency_key}:update")
                ),
            )
            return str(updated["id"])
        # Keyed by the customer, not the step: two deals of one customer onboarded at once (or
        # a search that lags the first create) still make one Stripe customer.
        create_key = (
            f"q2c-customer:{customer.global_id}:create"
            if customer.global_id
            else f"{idempotency_key}:create"
        )
        try:
            created = await self._call(
                f"create customer for {customer.label}",
                lambda: self._sdk.v1.customers.create_async(
                    params=params, options=_opts(create_key)
                ),
            )
        except ConflictError:
            # Created first by another deal with other details: update that customer instead.
            found = await self._find_customer(customer)
            if found is None:
                raise
            target = str(found["id"])
            updated = await self._call(
                f"update customer {target} ({customer.label})",
                lambda: self._sdk.v1.customers.update_async(
                    target, params=params, options=_opts(f"{idempotency_key}:update")
                ),
            )
            return str(updated["id"])
        return str(created["id"])

    async def _find_customer(self, customer: Customer) -> dict[str, Any] | None:
        """The one Stripe customer whose ``metadata['hub_global_id']`` is the customer's."""
        global_id = customer.global_id
        if global_id is None:
            return None
        if self.config.customer_lookup is CustomerLookup.SEARCH:
            query = f"metadata['hub_global_id']:{mapping.search_literal(global_id)}"
            found = await self._call(
                f"search customers for {customer.label}",
                lambda: self._sdk.v1.customers.search_async(params={"query": query, "limit": 10}),
            )
            matches = list(found.get("data") or [])
        else:
            if not customer.email:
                return None
            email = customer.email
            listed = await self._call(
                f"list customers by email for {customer.label}",
                lambda: self._sdk.v1.customers.list_async(params={"email": email, "limit": 100}),
            )
            matches = [
                c
                for c in listed.get("data") or []
                if (c.get("metadata") or {}).get("hub_global_id") == global_id
            ]
        if len(matches) > 1:
            raise ConflictError(
                f"{customer.label}: Stripe has several customers with hub_global_id "
                f"{global_id!r} ({', '.join(sorted(str(c['id']) for c in matches))}); "
                "merge or delete the duplicates",
                system=self.system,
            )
        return matches[0] if matches else None

    async def _customer_of(self, subscription: Subscription) -> str:
        ref = subscription.customer
        known = ref.id_in(self.system)
        if known:
            return known
        if ref.global_id:
            found = await self._find_customer(Customer(global_id=ref.global_id, name="lookup"))
            if found is not None:
                return str(found["id"])
        raise MappingError(
            f"{subscription.label}: customer {ref} has no Stripe customer id; "
            "upsert the customer to billing first",
            system=self.system,
        )

    # --- subscriptions ------------------------------------------------------------------------

    async def create_subscription(
        self, subscription: Subscription, *, idempotency_key: str
    ) -> Subscription:
        """Create it in Stripe and return it with Stripe's ids.

        Each item's ``price_plan.external_ids['billing']`` is a price id (``price_...``), a legacy
        plan id (``plan_...``, sent as the item's ``plan``, as older accounts and localstripe
        expect) or else a lookup key.
        """
        customer_id = await self._customer_of(subscription)
        prices = await self._resolve_prices(subscription)
        items: list[dict[str, Any]] = []
        one_offs: list[dict[str, Any]] = []
        for item, price in zip(subscription.items, prices, strict=True):
            if _is_one_time(price):
                one_offs.append(await self._one_off(subscription, item, price))
                continue
            kind = "plan" if price.get("object") == "plan" else "price"
            entry: dict[str, Any] = {kind: price["id"]}
            if item.quantity is not None and _usage_type(price) != "metered":
                entry["quantity"] = item.quantity
            if item.discount_percent is not None:
                coupon = await self._contract_coupon(item.discount_percent, subscription.label)
                entry["discounts"] = [{"coupon": coupon}]
            items.append(entry)
        if not items:
            raise MappingError(
                f"{subscription.label}: every item is a one-time price; a subscription needs at "
                "least one recurring price",
                system=self.system,
            )
        metadata = {
            k: v
            for k, v in (
                ("contract_number", subscription.contract_number),
                ("hub_global_id", subscription.global_id),
            )
            if v
        }
        params: Any = {"customer": customer_id, "items": items, "metadata": metadata}
        if one_offs:
            params["add_invoice_items"] = one_offs
        if subscription.tax_rates:
            params["default_tax_rates"] = [
                await self._tax_rate_id(rate, subscription.label) for rate in subscription.tax_rates
            ]
        if self.config.collection_method is CollectionMethod.SEND_INVOICE:
            params["collection_method"] = CollectionMethod.SEND_INVOICE.value
            params["days_until_due"] = self.config.days_until_due
        created = await self._call(
            f"create subscription {subscription.label}",
            lambda: self._sdk.v1.subscriptions.create_async(
                params=params, options=_opts(idempotency_key)
            ),
        )
        full = await self._with_all_items(created)
        stripe_sub = _canonical(
            f"Stripe subscription {full.get('id')}", lambda: mapping.subscription_from_stripe(full)
        )
        return _canonical(
            subscription.label,
            lambda: mapping.merge_subscription(
                subscription,
                stripe_sub,
                [str(p["id"]) for p in prices],
                one_time={str(p["id"]) for p in prices if _is_one_time(p)},
            ),
        )

    async def _one_off(
        self, subscription: Subscription, item: SubscriptionItem, price: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A one-time price as Stripe bills it with a new subscription: an invoice item on the
        first invoice (``add_invoice_items``), never an item that renews."""
        entry: dict[str, Any] = {"price": price["id"], "quantity": item.quantity or 1}
        if item.discount_percent is not None:
            coupon = await self._contract_coupon(item.discount_percent, subscription.label)
            entry["discounts"] = [{"coupon": coupon}]
        return entry

    async def _tax_rate_id(self, rate: TaxRate, label: str) -> str:
        """The Stripe tax rate of ``rate.code``: found by its metadata, else created once."""
        if rate.code in self._tax_rate_ids:
            return self._tax_rate_ids[rate.code]
        matches: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": _PAGE, "active": True}
        while True:
            page = await self._call(
                f"list tax rates for {label}",
                lambda params=dict(params): self._sdk.v1.tax_rates.list_async(params=params),  # type: ignore[misc]
            )
            data = list(page.get("data") or [])
            matches += [
                r for r in data if (r.get("metadata") or {}).get(mapping.TAX_CODE_KEY) == rate.code
            ]
            if not page.get("has_more") or not data:
                break
            params["starting_after"] = str(data[-1]["id"])
        if len(matches) > 1:
            raise ConflictError(
                f"{label}: Stripe has several active tax rates with {mapping.TAX_CODE_KEY} "
                f"{rate.code!r} ({', '.join(sorted(str(r['id']) for r in matches))}); "
                "archive the duplicates",
                system=self.system,
            )
        if matches:
            found = matches[0]
        else:
            found = await self._call(
                f"create tax rate {rate.code} for {label}",
                lambda: self._sdk.v1.tax_rates.create_async(
                    params=mapping.tax_rate_params(rate),  # type: ignore[arg-type]
                    options=_opts(f"q2c-tax-rate:{rate.code}:{rate.percentage}:{rate.inclusive}"),
                ),
            )
        stored = _canonical(
            f"Stripe tax rate {found.get('id')}", lambda: mapping.tax_rate_from_stripe(found)
        )
        if (stored.percentage, stored.inclusive) != (rate.percentage, rate.inclusive):
            raise ConflictError(
                f"{label}: tax rate {rate.code} is {rate.percentage}% "
                f"({'inclusive' if rate.inclusive else 'exclusive'}) in the configuration but "
                f"Stripe's {found['id']} is {stored.percentage}% "
                f"({'inclusive' if stored.inclusive else 'exclusive'}); give the new rate a new "
                "code",
                system=self.system,
            )
        self._tax_rate_ids[rate.code] = str(found["id"])
        self._tax_rates[str(found["id"])] = stored
        return str(found["id"])

    async def _rates_of(self, lines: list[dict[str, Any]], what: str) -> dict[str, TaxRate]:
        """The tax rates the lines name, read once per connector (Stripe rates are immutable)."""
        for rate_id in sorted(mapping.tax_rate_ids(lines) - self._tax_rates.keys()):
            found = await self._call(
                f"read tax rate {rate_id} of {what}",
                lambda rate_id=rate_id: self._sdk.v1.tax_rates.retrieve_async(rate_id),  # type: ignore[misc]
            )
            self._tax_rates[rate_id] = _canonical(
                f"Stripe tax rate {rate_id}",
                lambda found=found: mapping.tax_rate_from_stripe(found),  # type: ignore[misc]
            )
        return self._tax_rates

    async def _contract_coupon(self, percent: Decimal, label: str) -> str:
        """The coupon for a contract discount of ``percent`` off for the whole term.

        One coupon per percentage, with a readable id (``q2c-15_5pct``), found or else created;
        a concurrent creation of the same coupon is fine (Stripe says it already exists)."""
        text = format(percent.normalize(), "f")
        coupon_id = f"q2c-{text.replace('.', '_')}pct"
        if coupon_id in self._coupons:
            return coupon_id

        async def read() -> dict[str, Any]:
            return await self._call(
                f"read coupon {coupon_id} for {label}",
                lambda: self._sdk.v1.coupons.retrieve_async(coupon_id),
            )

        try:
            found: dict[str, Any] | None = await read()
        except ResourceMissing:
            found = None
        if found is None:
            try:
                found = await self._call(
                    f"create coupon {coupon_id} for {label}",
                    lambda: self._sdk.v1.coupons.create_async(
                        params={
                            "id": coupon_id,
                            "percent_off": float(percent),
                            "duration": "forever",
                            "name": f"{text}% contract discount",
                            "metadata": {"created_by": "quote2cash"},
                        },
                        options=_opts(f"q2c-coupon-{coupon_id}"),
                    ),
                )
            except InvalidRequest as exc:
                if exc.code != "resource_already_exists":
                    raise
                found = await read()
        if Decimal(str(found.get("percent_off"))) != percent or found.get("duration") != "forever":
            raise ConflictError(
                f"{label}: Stripe coupon {coupon_id} is {found.get('percent_off')}% off "
                f"{found.get('duration')}, expected {text}% off forever; rename or delete it",
                system=self.system,
            )
        self._coupons.add(coupon_id)
        return coupon_id

    async def _resolve_prices(self, subscription: Subscription) -> list[dict[str, Any]]:
        """Each item's Stripe price (by id, legacy plan id, or lookup key), checked usable."""
        refs: list[str] = []
        for number, item in enumerate(subscription.items, start=1):
            ref = item.price_plan.id_in(self.system)
            if not ref:
                raise MappingError(
                    f"{subscription.label}: item {number} price plan {item.price_plan} has no "
                    "Stripe price id or lookup key (external_ids['billing'])",
                    system=self.system,
                )
            refs.append(ref)
        keys = sorted({r for r in refs if not r.startswith(_ID_PREFIXES)})
        by_key: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 10):
            chunk = keys[start : start + 10]
            listed = await self._call(
                f"look up prices {', '.join(chunk)} for {subscription.label}",
                lambda chunk=chunk: self._sdk.v1.prices.list_async(  # type: ignore[misc]
                    params={"lookup_keys": chunk, "limit": 100}
                ),
            )
            by_key.update({str(p["lookup_key"]): p for p in listed.get("data") or []})
        resolved: list[dict[str, Any]] = []
        for number, ref in enumerate(refs, start=1):
            price = by_key.get(ref) if ref in keys else await self._price_by_id(ref, subscription)
            if price is None:
                raise MappingError(
                    f"{subscription.label}: item {number} price {ref!r} is not a Stripe price id "
                    "or lookup key",
                    system=self.system,
                )
            if str(price.get("currency", "")).upper() != subscription.currency:
                raise MappingError(
                    f"{subscription.label}: item {number} price {ref!r} is in "
                    f"{str(price.get('currency')).upper()}, the subscription in "
                    f"{subscription.currency}",
                    system=self.system,
                )
            if price.get("active") is False:
                raise MappingError(
                    f"{subscription.label}: item {number} price {ref!r} is archived in Stripe",
                    system=self.system,
                )
            resolved.append(price)
        return resolved

    async def _price_by_id(self, ref: str, subscription: Subscription) -> dict[str, Any] | None:
        try:
            if ref.startswith("plan_"):
                return await self._call(
                    f"read plan {ref} for {subscription.label}",
                    lambda: self._sdk.v1.plans.retrieve_async(ref),
                )
            return await self._call(
                f"read price {ref} for {subscription.label}",
                lambda: self._sdk.v1.prices.retrieve_async(ref),
            )
        except ResourceMissing:
            return None

    async def _with_all_items(self, sub: dict[str, Any]) -> dict[str, Any]:
        """The subscription with every item (Stripe embeds the first 10)."""
        items = sub.get("items") or {}
        if not items.get("has_more"):
            return sub
        data: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: Any = {"subscription": sub["id"], "limit": _PAGE}
            if cursor:
                params["starting_after"] = cursor
            page = await self._call(
                f"list items of subscription {sub['id']}",
                lambda params=params: self._sdk.v1.subscription_items.list_async(  # type: ignore[misc]
                    params=params
                ),
            )
            data.extend(page.get("data") or [])
            if not page.get("has_more") or not data:
                break
            cursor = str(data[-1]["id"])
        return {**sub, "items": {**items, "data": data, "has_more": False}}

    async def _subscription(self, subscription_id: str) -> dict[str, Any]:
        sub = await self._call(
            f"read subscription {subscription_id}",
            lambda: self._sdk.v1.subscriptions.retrieve_async(subscription_id),
        )
        return await self._with_all_items(sub)

    def _map_subscription(self, sub: Mapping[str, Any]) -> Subscription:
        return _canonical(
            f"Stripe subscription {sub.get('id')}", lambda: mapping.subscription_from_stripe(sub)
        )

    async def get_subscription(self, subscription_id: str) -> Subscription:
        return self._map_subscription(await self._subscription(subscription_id))

    async def change_quantity(self, amendment: Amendment, *, idempotency_key: str) -> Subscription:
        """Set one item's quantity with the amendment's proration behaviour.

        ``effective_at`` becomes Stripe's ``proration_date`` when it falls in the current period
        (so a retry prorates identically); otherwise Stripe prorates from now. If Stripe's quantity
        is neither ``previous_quantity`` nor ``new_quantity``, someone else changed it: Conflict.
        """
        sub_id = amendment.subscription.id_in(self.system)
        if not sub_id:
            raise MappingError(
                f"{amendment.label}: subscription {amendment.subscription} has no Stripe id",
                system=self.system,
            )
        current = await self._subscription(sub_id)
        if current.get("status") in _ENDED:
            raise ConflictError(
                f"{amendment.label}: subscription {sub_id} is {current['status']}; "
                "its quantity cannot change",
                system=self.system,
            )
        items = (current.get("items") or {}).get("data") or []
        item_id = amendment.subscription_item.id_in(self.system)
        if item_id is None and len(items) == 1:
            item_id = str(items[0]["id"])
        item = next((i for i in items if i["id"] == item_id), None)
        if item is None:
            raise MappingError(
                f"{amendment.label}: subscription item {amendment.subscription_item} is not on "
                f"Stripe subscription {sub_id}",
                system=self.system,
            )
        quantity = item.get("quantity")
        expected = amendment.previous_quantity
        if expected is not None and quantity not in (expected, amendment.new_quantity):
            raise ConflictError(
                f"{amendment.label}: expected quantity {expected} on item {item_id}, Stripe has "
                f"{quantity}; amend from the current quantity",
                system=self.system,
            )
        params: Any = {
            "items": [{"id": item_id, "quantity": amendment.new_quantity}],
            "proration_behavior": amendment.proration_behavior.value,
        }
        if amendment.proration_behavior is not ProrationBehavior.NONE:
            at = int(amendment.effective_at.timestamp())
            start = item.get("current_period_start", current.get("current_period_start"))
            end = item.get("current_period_end", current.get("current_period_end"))
            if start is not None and end is not None and int(start) <= at < int(end):
                params["proration_date"] = at
        updated = await self._call(
            f"change quantity for {amendment.label}",
            lambda: self._sdk.v1.subscriptions.update_async(
                sub_id, params=params, options=_opts(idempotency_key)
            ),
        )
        return self._map_subscription(await self._with_all_items(updated))

    async def renew(self, subscription_id: str, *, idempotency_key: str) -> Subscription:
        """Make sure it renews: withdraw a scheduled cancellation; canceled -> ConflictError."""
        current = await self._subscription(subscription_id)
        if current.get("status") in _ENDED:
            raise ConflictError(
                f"subscription {subscription_id} is {current['status']} and cannot be renewed in "
                "Stripe; create a new subscription",
                system=self.system,
            )
        if current.get("cancel_at_period_end"):
            params: Any = {"cancel_at_period_end": False}
        elif current.get("cancel_at"):
            params = {"cancel_at": ""}
        else:
            return self._map_subscription(current)
        updated = await self._call(
            f"withdraw the cancellation of subscription {subscription_id}",
            lambda: self._sdk.v1.subscriptions.update_async(
                subscription_id, params=params, options=_opts(idempotency_key)
            ),
        )
        return self._map_subscription(await self._with_all_items(updated))

    async def cancel(
        self, subscription_id: str, *, at_period_end: bool, idempotency_key: str
    ) -> Subscription:
        """Cancel now (prorated credit on a final invoice) or at period end; no-op when done."""
        current = await self._subscription(subscription_id)
        if current.get("status") in _ENDED:
            return self._map_subscription(current)
        if at_period_end:
            if current.get("cancel_at_period_end"):
                return self._map_subscription(current)
            updated = await self._call(
                f"cancel subscription {subscription_id} at period end",
                lambda: self._sdk.v1.subscriptions.update_async(
                    subscription_id,
                    params={"cancel_at_period_end": True},
                    options=_opts(idempotency_key),
                ),
            )
            return self._map_subscription(await self._with_all_items(updated))
        try:
            canceled = await self._call(
                f"cancel subscription {subscription_id}",
                lambda: self._sdk.v1.subscriptions.cancel_async(
                    subscription_id,
                    params={"prorate": True, "invoice_now": True},
                    options=_opts(idempotency_key),
                ),
            )
        except InvalidRequest:
            again = await self._subscription(subscription_id)
            if again.get("status") in _ENDED:
                return self._map_subscription(again)
            raise
        return self._map_subscription(await self._with_all_items(canceled))

    # --- catalog ------------------------------------------------------------------------------

    async def list_prices(self) -> list[PricePlan]:
        """Every recurring per-unit month/year price, active or archived (see ``mapping``)."""
        plans: list[PricePlan] = []
        cursor: str | None = None
        while True:
            params: Any = {"limit": _PAGE}
            if cursor:
                params["starting_after"] = cursor
            page = await self._call(
                "list prices",
                lambda params=params: self._sdk.v1.prices.list_async(params=params),  # type: ignore[misc]
            )
            data = page.get("data") or []
            for price in data:
                plan = _canonical(
                    f"Stripe price {price.get('id')}",
                    lambda price=price: mapping.price_plan_from_stripe(price),  # type: ignore[misc]
                )
                if plan is not None:
                    plans.append(plan)
            if not page.get("has_more") or not data:
                return plans
            cursor = str(data[-1]["id"])

    # --- usage --------------------------------------------------------------------------------

    async def report_usage(self, record: UsageRecord) -> None:
        """Send one billing meter event, ``identifier`` = the record's idempotency key.

        A meter record goes to the meter's ``event_name`` with payload ``stripe_customer_id`` and
        ``value``; a subscription-item record to the meter of the item's price, with that meter's
        payload keys. A repeated identifier (Stripe says duplicate) is success: already counted.
        """
        event_name, customer_key, value_key, customer_id = await self._usage_target(record)
        params: Any = {
            "event_name": event_name,
            "identifier": record.idempotency_key,
            "timestamp": int(record.timestamp.timestamp()),
            "payload": {
                customer_key: customer_id,
                value_key: format(record.quantity.normalize(), "f"),
            },
        }
        try:
            await self.api.call(
                f"report usage {record.label}",
                lambda: self._sdk.v1.billing.meter_events.create_async(
                    params=params, options=_opts(record.idempotency_key)
                ),
            )
        except InvalidRequest as error:
            if error.code == "duplicate_meter_event" or error.param == "identifier":
                return
            raise

    async def _usage_target(self, record: UsageRecord) -> tuple[str, str, str, str]:
        if record.meter is not None:
            customer = record.customer.id_in(self.system) if record.customer else None
            if not customer:
                raise MappingError(
                    f"{record.label}: customer {record.customer} has no Stripe customer id",
                    system=self.system,
                )
            return record.meter, "stripe_customer_id", "value", customer
        ref = record.subscription_item
        item_id = ref.id_in(self.system) if ref else None
        if not item_id:
            raise MappingError(
                f"{record.label}: subscription item {ref} has no Stripe id", system=self.system
            )
        cached = self._usage_targets.get(item_id)
        if cached is not None:
            return cached
        item = await self._call(
            f"read subscription item {item_id} for {record.label}",
            lambda: self._sdk.v1.subscription_items.retrieve_async(item_id),
        )
        price = item.get("price") or {}
        meter_id = (price.get("recurring") or {}).get("meter")
        if not meter_id:
            raise MappingError(
                f"{record.label}: subscription item {item_id} has price {price.get('id')} without "
                "a billing meter; Stripe takes usage through meters",
                system=self.system,
            )
        meter = await self._call(
            f"read billing meter {meter_id} for {record.label}",
            lambda: self._sdk.v1.billing.meters.retrieve_async(str(meter_id)),
        )
        sub = await self._subscription(str(item["subscription"]))
        target = (
            str(meter["event_name"]),
            str(
                (meter.get("customer_mapping") or {}).get("event_payload_key")
                or "stripe_customer_id"
            ),
            str((meter.get("value_settings") or {}).get("event_payload_key") or "value"),
            str(sub["customer"]),
        )
        self._usage_targets[item_id] = target
        return target

    async def post_usage(
        self, postings: Sequence[UsagePosting], *, idempotency_key: str
    ) -> list[PostedUsage]:
        """One v1 billing meter event per posting, ``identifier`` = the posting's identifier and
        ``Idempotency-Key`` = ``{key}:{identifier}``; Stripe's ``duplicate_meter_event`` answer is
        a receipt with ``duplicate`` set (already counted once)."""
        receipts: list[PostedUsage] = []
        for posting in postings:
            target = await self._meter_of(posting.subscription, posting.meter)
            params: Any = {
                "event_name": target.event_name,
                "identifier": posting.identifier,
                "timestamp": int(posting.at.timestamp()),
                "payload": {
                    target.customer_key: target.customer,
                    target.value_key: format(posting.quantity.normalize(), "f"),
                },
            }
            duplicate = False
            try:
                await self.api.call(
                    f"post usage {posting.identifier} of subscription {posting.subscription}",
                    lambda params=params, posting=posting: (  # type: ignore[misc]
                        self._sdk.v1.billing.meter_events.create_async(
                            params=params, options=_opts(f"{idempotency_key}:{posting.identifier}")
                        )
                    ),
                )
            except InvalidRequest as error:
                if error.code != "duplicate_meter_event":
                    raise
                duplicate = True
            receipts.append(
                PostedUsage(
                    identifier=posting.identifier,
                    subscription=posting.subscription,
                    meter=posting.meter,
                    meter_id=target.meter_id,
                    customer=target.customer,
                    quantity=posting.quantity,
                    at=posting.at,
                    duplicate=duplicate,
                )
            )
        return receipts

    async def usage_counted(
        self, subscription: str, meter: str, start: datetime, end: datetime
    ) -> Decimal:
        """The meter's event summary for the subscription's customer over the whole minutes of
        ``[start, end)`` (Stripe summarises whole minutes only; the hub's postings keep their
        timestamps inside them, see ``flows.usage_posting.counted_at``)."""
        target = await self._meter_of(subscription, meter)
        first = -(-int(start.timestamp()) // 60) * 60
        last = int(end.timestamp()) // 60 * 60
        if last <= first:
            return Decimal(0)
        params: Any = {"customer": target.customer, "start_time": first, "end_time": last}
        page = await self._call(
            f"read usage of meter {target.meter_id} for subscription {subscription}",
            lambda: self._sdk.v1.billing.meters.event_summaries.list_async(
                target.meter_id, params=params
            ),
        )
        return sum(
            (Decimal(str(s.get("aggregated_value") or 0)) for s in page.get("data") or []),
            Decimal(0),
        )

    async def usage_lines(
        self, *, subscription: str | None = None, invoice: str | None = None
    ) -> list[UsageLine]:
        """Lines of metered prices, read from the invoices' lines and their prices' meters."""
        if invoice is not None:
            invoices = [
                await self._call(
                    f"read invoice {invoice}",
                    lambda: self._sdk.v1.invoices.retrieve_async(invoice),
                )
            ]
        elif subscription is not None:
            invoices = await self._invoices_of(subscription)
        else:
            raise DataError("usage_lines needs a subscription or an invoice", system=self.system)
        found: list[UsageLine] = []
        for held in sorted(invoices, key=lambda i: int(i.get("created") or 0)):
            found.extend(await self._usage_lines_of(held))
        return found

    async def _invoices_of(self, subscription: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"subscription": subscription, "limit": _PAGE}
        while True:
            page = await self._call(
                f"list invoices of subscription {subscription}",
                lambda params=dict(params): self._sdk.v1.invoices.list_async(params=params),  # type: ignore[misc]
            )
            data = list(page.get("data") or [])
            found.extend(data)
            if not page.get("has_more") or not data:
                return found
            params["starting_after"] = str(data[-1]["id"])

    async def _usage_lines_of(self, invoice: Mapping[str, Any]) -> list[UsageLine]:
        invoice_id = str(invoice["id"])
        lines = list((invoice.get("lines") or {}).get("data") or [])
        if (invoice.get("lines") or {}).get("has_more"):
            lines = []
            params: dict[str, Any] = {"limit": _PAGE}
            while True:
                page = await self._call(
                    f"list lines of invoice {invoice_id}",
                    lambda params=dict(params): self._sdk.v1.invoices.line_items.list_async(  # type: ignore[misc]
                        invoice_id, params=params
                    ),
                )
                data = list(page.get("data") or [])
                lines.extend(data)
                if not page.get("has_more") or not data:
                    break
                params["starting_after"] = str(data[-1]["id"])
        currency = str(invoice["currency"]).upper()
        found: list[UsageLine] = []
        for position, line in enumerate(lines, 1):
            usage = await self._usage_line(invoice, line, position, currency)
            if usage is not None:
                found.append(usage)
        return found

    async def _usage_line(
        self, invoice: Mapping[str, Any], line: Mapping[str, Any], position: int, currency: str
    ) -> UsageLine | None:
        details = (line.get("pricing") or {}).get("price_details") or {}
        price_id = details.get("price") or (line.get("price") or {}).get("id")
        parent = (line.get("parent") or {}).get("subscription_item_details") or {}
        subscription = parent.get("subscription") or line.get("subscription")
        if not price_id or not subscription:
            return None
        price = await self._price(str(price_id))
        meter_id = (price.get("recurring") or {}).get("meter")
        if not meter_id:
            return None
        meter = await self._meter(str(meter_id))
        period = line.get("period") or {}
        quantity = line.get("quantity_decimal", line.get("quantity"))
        unit_minor = (line.get("pricing") or {}).get("unit_amount_decimal")
        if unit_minor is None:
            unit_minor = price.get("unit_amount_decimal", price.get("unit_amount"))
        unit = mapping.unit_amount(unit_minor, currency)
        if quantity is None or unit is None:
            raise MappingError(
                f"Stripe invoice {invoice['id']} line {line.get('id')}: metered line without "
                "quantity or unit amount",
                system=self.system,
            )
        return UsageLine(
            invoice_id=str(invoice["id"]),
            invoice_number=invoice.get("number"),
            invoice_status=str(invoice.get("status") or ""),
            line_id=str(line["id"]),
            position=position,
            subscription=str(subscription),
            meter=str(meter["event_name"]),
            meter_id=str(meter_id),
            period_start=datetime.fromtimestamp(int(period["start"]), UTC),
            period_end=datetime.fromtimestamp(int(period["end"]), UTC),
            quantity=Decimal(str(quantity)),
            unit_amount=unit,
            amount=Money.from_stripe_amount(int(line["amount"]), currency),
        )

    async def _price(self, price_id: str) -> dict[str, Any]:
        cached = self._prices_read.get(price_id)
        if cached is None:
            cached = await self._call(
                f"read price {price_id}", lambda: self._sdk.v1.prices.retrieve_async(price_id)
            )
            self._prices_read[price_id] = cached
        return cached

    async def _meter(self, meter_id: str) -> dict[str, Any]:
        cached = self._meters_read.get(meter_id)
        if cached is None:
            cached = await self._call(
                f"read billing meter {meter_id}",
                lambda: self._sdk.v1.billing.meters.retrieve_async(meter_id),
            )
            self._meters_read[meter_id] = cached
        return cached

    async def _meter_of(self, subscription: str, meter: str) -> _MeterTarget:
        """Where usage of ``meter`` on ``subscription`` goes: the meter of the item whose
        metered price counts it, and the payload keys naming the customer and the value."""
        cached = self._meter_targets.get((subscription, meter))
        if cached is not None:
            return cached
        sub = await self._subscription(subscription)
        for item in (sub.get("items") or {}).get("data") or []:
            meter_id = ((item.get("price") or {}).get("recurring") or {}).get("meter")
            if not meter_id:
                continue
            held = await self._meter(str(meter_id))
            if meter not in (held.get("event_name"), held.get("id")):
                continue
            target = _MeterTarget(
                meter_id=str(meter_id),
                event_name=str(held["event_name"]),
                customer_key=str(
                    (held.get("customer_mapping") or {}).get("event_payload_key")
                    or "stripe_customer_id"
                ),
                value_key=str(
                    (held.get("value_settings") or {}).get("event_payload_key") or "value"
                ),
                customer=str(sub["customer"]),
            )
            self._meter_targets[(subscription, meter)] = target
            return target
        raise DataError(
            f"subscription {subscription}: no item has a metered price on meter {meter!r}",
            system=self.system,
        )

    # --- invoices and payments ----------------------------------------------------------------

    async def get_invoice(self, invoice_id: str) -> Invoice:
        """The invoice with every line; its total equals Stripe's to the cent, or MappingError."""
        invoice = await self._call(
            f"read invoice {invoice_id}",
            lambda: self._sdk.v1.invoices.retrieve_async(invoice_id),
        )
        lines = list((invoice.get("lines") or {}).get("data") or [])
        more = bool((invoice.get("lines") or {}).get("has_more"))
        while more and lines:
            params = {"limit": _PAGE, "starting_after": str(lines[-1]["id"])}
            page = await self._call(
                f"list lines of invoice {invoice_id}",
                lambda params=params: self._sdk.v1.invoices.line_items.list_async(  # type: ignore[misc]
                    invoice_id, params=params
                ),
            )
            lines.extend(page.get("data") or [])
            more = bool(page.get("has_more")) and bool(page.get("data"))
        rates = await self._rates_of(lines, f"invoice {invoice_id}")
        return _canonical(
            f"Stripe invoice {invoice_id}",
            lambda: mapping.invoice_from_stripe(invoice, lines, rates),
        )

    async def get_payment(self, payment_id: str) -> Payment:
        """A charge (``ch_``) or payment intent (``pi_``) with the invoice it paid, found through
        Stripe's invoice payments; refunds show as the cumulative ``amount_refunded``."""
        if payment_id.startswith("pi_"):
            intent = await self._call(
                f"read payment {payment_id}",
                lambda: self._sdk.v1.payment_intents.retrieve_async(payment_id),
            )
            charge_id = mapping.ident(intent.get("latest_charge"))
            if charge_id is None:
                raise ConflictError(
                    f"payment {payment_id} has no charge yet (status {intent.get('status')})",
                    system=self.system,
                )
        else:
            charge_id = payment_id
        charge = await self._call(
            f"read charge {charge_id}", lambda: self._sdk.v1.charges.retrieve_async(charge_id)
        )
        intent_id = mapping.ident(charge.get("payment_intent"))
        invoice_id: str | None = None
        if intent_id:
            paid = await self._call(
                f"find the invoice paid by {intent_id}",
                lambda: self._sdk.v1.invoice_payments.list_async(
                    params={"payment": {"type": "payment_intent", "payment_intent": intent_id}}
                ),
            )
            invoices = {str(p["invoice"]) for p in paid.get("data") or [] if p.get("invoice")}
            if len(invoices) > 1:
                raise ConflictError(
                    f"payment {intent_id} paid several invoices ({', '.join(sorted(invoices))})",
                    system=self.system,
                )
            invoice_id = next(iter(invoices), None)
        return _canonical(
            f"Stripe charge {charge_id}", lambda: mapping.payment_from_charge(charge, invoice_id)
        )

    async def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> Payment | None:
        """Collect an open invoice now with the customer's default payment method.

        A decline is a business outcome: a ``failed`` Payment with Stripe's decline code, not an
        error. An invoice already paid gives its payment; None when nothing was due.
        Void or uncollectible invoices raise ConflictError.
        """
        invoice = await self._call(
            f"read invoice {invoice_id}", lambda: self._sdk.v1.invoices.retrieve_async(invoice_id)
        )
        status = invoice.get("status")
        if status in ("void", "uncollectible"):
            raise ConflictError(
                f"invoice {invoice_id} is {status}; it cannot be paid", system=self.system
            )
        if status != "paid":
            try:
                invoice = await self._call(
                    f"pay invoice {invoice_id}",
                    lambda: self._sdk.v1.invoices.pay_async(
                        invoice_id, options=_opts(idempotency_key)
                    ),
                )
            except CardDeclined as declined:
                after = await self._call(
                    f"read invoice {invoice_id}",
                    lambda: self._sdk.v1.invoices.retrieve_async(invoice_id),
                )
                outcome = (
                    declined.decline_code or declined.code or "card_declined",
                    declined.message,
                )
                return _canonical(
                    f"payment of Stripe invoice {invoice_id}",
                    lambda: mapping.payment_from_invoice(after, declined=outcome),
                )
            if invoice.get("status") != "paid":
                unpaid = invoice
                outcome_left = (
                    "payment_failed",
                    f"Stripe left invoice {invoice_id} {unpaid.get('status')} after the attempt",
                )
                return _canonical(
                    f"payment of Stripe invoice {invoice_id}",
                    lambda: mapping.payment_from_invoice(unpaid, declined=outcome_left),
                )
        if not int(invoice.get("amount_paid") or 0):
            return None
        return _canonical(
            f"payment of Stripe invoice {invoice_id}",
            lambda: mapping.payment_from_invoice(invoice),
        )

    # --- reconciliation -----------------------------------------------------------------------

    async def ledger(
        self,
        kind: LedgerKind,
        *,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = _PAGE,
    ) -> Page[LedgerEntry]:
        """One page of customers, subscriptions, finalised invoices or payments (charges),
        newest first (``cursor``: the last id); ``since``: created at or after it."""
        params: dict[str, Any] = {"limit": max(1, min(limit, _PAGE))}
        if cursor:
            params["starting_after"] = cursor
        if since is not None:
            params["created"] = {"gte": int(since.timestamp())}
        if kind is LedgerKind.CUSTOMER:
            resource: Any = self._sdk.v1.customers
        elif kind is LedgerKind.CONTRACT:
            resource = self._sdk.v1.subscriptions
            params["status"] = "all"
        elif kind is LedgerKind.PAYMENT:
            resource = self._sdk.v1.charges
        else:
            resource = self._sdk.v1.invoices
        page = await self._call(f"list {kind.value}s", lambda: resource.list_async(params=params))
        rows = list(page.get("data") or [])
        last = str(rows[-1]["id"]) if rows and page.get("has_more") else None
        if kind is LedgerKind.CUSTOMER:
            return Page([mapping.ledger_customer(r) for r in rows], last)
        if kind is LedgerKind.CONTRACT:
            return Page([mapping.ledger_subscription(r) for r in rows], last)
        if kind is LedgerKind.PAYMENT:
            collected = [r for r in rows if r.get("status") == "succeeded"]
            return Page(
                [mapping.ledger_charge(r, await self._refunded_invoice(r)) for r in collected],
                last,
            )
        finalised = [r for r in rows if r.get("status") in ("open", "paid") and r.get("number")]
        return Page([mapping.ledger_invoice(r) for r in finalised], last)

    async def _refunded_invoice(self, charge: dict[str, Any]) -> str | None:
        """The invoice a refunded charge paid (Stripe's invoice payments); None if no refund."""
        intent = mapping.ident(charge.get("payment_intent"))
        if not charge.get("amount_refunded") or not intent:
            return None
        paid = await self._call(
            f"find the invoice paid by {intent}",
            lambda: self._sdk.v1.invoice_payments.list_async(
                params={"payment": {"type": "payment_intent", "payment_intent": intent}}
            ),
        )
        return next((str(p["invoice"]) for p in paid.get("data") or [] if p.get("invoice")), None)

    # --- events -------------------------------------------------------------------------------

    async def list_events(self, cursor: str | None = None, limit: int = 100) -> Page[BillingEvent]:
        """Events oldest first, strictly after ``cursor`` (an event id; None: the oldest kept).

        Stripe lists newest first; ``ending_before=cursor`` gives the ``limit`` events just newer
        than the cursor, which are reversed. Without a cursor, the list is walked back to its
        oldest event (Stripe keeps 30 days). ``next_cursor`` is the newest event returned, or
        None when there is nothing newer yet (keep polling with the cursor you have). A cursor
        Stripe no longer keeps raises DataError.
        """
        size = max(1, min(limit, _PAGE))
        if cursor is not None:
            params: Any = {"limit": size, "ending_before": cursor}
            page = await self._call(
                f"list events after {cursor}",
                lambda: self._sdk.v1.events.list_async(params=params),
            )
            newest_first = list(page.get("data") or [])
        else:
            newest_first = await self._oldest_events(size)
        events: list[BillingEvent] = []
        rejected: list[RejectedRecord] = []
        for e in reversed(newest_first):
            try:
                events.append(
                    _canonical(f"Stripe event {e.get('id')}", lambda e=e: mapping.billing_event(e))  # type: ignore[misc]
                )
            except MappingError as refused:
                rejected.append(
                    RejectedRecord(
                        self.system, f"event {e.get('id')}", refused.message, "mapping", plain(e)
                    )
                )
        newest = str(newest_first[0]["id"]) if newest_first else None
        return Page(events, newest, rejected)

    async def _oldest_events(self, size: int) -> list[dict[str, Any]]:
        tail: deque[dict[str, Any]] = deque(maxlen=size)
        after: str | None = None
        while True:
            params: Any = {"limit": _PAGE}
            if after:
                params["starting_after"] = after
            page = await self._call(
                "list events",
                lambda params=params: self._sdk.v1.events.list_async(params=params),  # type: ignore[misc]
            )
            data = page.get("data") or []
            tail.extend(data)
            if not page.get("has_more") or not data:
                return list(tail)
            after = str(data[-1]["id"])

    def verify_webhook(self, payload: bytes, signature_header: str) -> BillingEvent:
        """``verify_webhook`` with this account's ``webhook_secret``."""
        if self.config.webhook_secret is None:
            raise AuthError(
                "webhook rejected: no webhook_secret is configured for this Stripe account",
                system=self.system,
            )
        return verify_webhook(
            payload,
            signature_header,
            self.config.webhook_secret,
            self.config.webhook_tolerance_seconds,
            system=self.system,
        )

    # --- health -------------------------------------------------------------------------------

    async def check(self) -> SystemCheck:
        """One cheap authenticated call (list one customer), no retries, with its latency."""
        started = time.perf_counter()
        where = self.config.base_url or "https://api.stripe.com"
        try:
            await self.api.call(
                "check the connection",
                lambda: self._sdk.v1.customers.list_async(params={"limit": 1}),
            )
        except AuthError as error:
            return SystemCheck(self.system, True, False, error.message, _ms(started))
        except TransientError as error:
            limited = "rate limited" in error.message
            return SystemCheck(self.system, limited, False, error.message, _ms(started))
        except IntegrationError as error:
            return SystemCheck(self.system, True, False, error.message, _ms(started))
        return SystemCheck(self.system, True, True, f"Stripe API at {where}", _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _is_one_time(price: Mapping[str, Any]) -> bool:
    return price.get("object") != "plan" and not price.get("recurring")


def _usage_type(price: Mapping[str, Any]) -> str:
    source: Mapping[str, Any] = (
        price if price.get("object") == "plan" else price.get("recurring") or {}
    )
    return str(source.get("usage_type") or "licensed")
