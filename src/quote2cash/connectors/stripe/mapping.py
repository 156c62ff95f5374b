"""Stripe objects (plain dicts, as the API answers) <-> canonical records; pure functions.

Both the current API shapes (periods on subscription items, ``invoice.parent``, line
``pricing``/``parent``, ``total_taxes``) and the older ones (periods on the subscription,
``invoice.subscription``, line ``price``/``plan``/``proration``, ``tax_amounts``) are read, so
localstripe's 2017 answers map too. Amounts go through ``Money.from_stripe_amount`` with the
invoice or price currency; unit amounts finer than a cent keep their precision.

Where things live (documented choices):
- PricePlan: ``external_ids['billing']`` is the price id, ``external_ids['lookup_key']`` its
  lookup key (the catalog's ``price:`` codes may be either), ``nickname`` is Stripe's nickname,
  ``per_seat`` is ``metadata['per_seat'] == 'true'``, ``global_id`` is
  ``metadata['hub_global_id']``. Per-unit monthly/yearly and one-time prices are plans (a
  one-time price has ``interval`` None); daily, weekly and tiered prices are left out.
- Invoice lines: ``amount`` is after discounts and credits and before tax (Stripe's ``amount``
  minus ``discount_amounts``, ``pretax_credit_amounts`` and inclusive tax), so
  ``total == sum(lines) + tax`` holds exactly as Stripe computes ``total``. The service period
  is ``[date(period.start), date(period.end))`` in UTC (a day belongs to the period that starts
  on it, so consecutive periods never overlap); a period within one day (a one-off item) serves
  that day.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from quote2cash.canonical import (
    STRIPE_EXPONENTS,
    Customer,
    Invoice,
    Money,
    Payment,
    PricePlan,
    Subscription,
    TaxExemption,
    TaxRate,
    to_decimal,
    validate_record,
)
from quote2cash.connectors.roles import BillingEvent, LedgerEntry, LedgerKind

__all__ = [
    "EVENT_TYPES",
    "TAX_CODE_KEY",
    "billing_event",
    "customer_metadata",
    "customer_params",
    "event_subject",
    "hub_event_type",
    "ident",
    "invoice_from_stripe",
    "jsonable",
    "merge_subscription",
    "payment_from_charge",
    "payment_from_invoice",
    "price_plan_from_stripe",
    "search_literal",
    "subscription_from_stripe",
    "subscription_item_ids",
    "tax_rate_from_stripe",
    "tax_rate_ids",
    "tax_rate_params",
    "unit_amount",
]

BILLING: Final = "billing"

EVENT_TYPES: Final[Mapping[str, str]] = {
    "customer.created": "billing.customer.created",
    "customer.updated": "billing.customer.updated",
    "customer.deleted": "billing.customer.deleted",
    "customer.subscription.created": "billing.subscription.created",
    "customer.subscription.updated": "billing.subscription.updated",
    "customer.subscription.deleted": "billing.subscription.canceled",
    "invoice.created": "billing.invoice.created",
    "invoice.updated": "billing.invoice.updated",
    "invoice.finalized": "billing.invoice.finalized",
    "invoice.paid": "billing.invoice.paid",
    "invoice.voided": "billing.invoice.voided",
    "invoice.marked_uncollectible": "billing.invoice.uncollectible",
    "invoice.overdue": "billing.invoice.overdue",
    "invoice.payment_succeeded": "billing.payment.succeeded",
    "invoice.payment_failed": "billing.payment.failed",
    "charge.refunded": "billing.payment.refunded",
    "credit_note.created": "billing.credit_note.created",
    "credit_note.voided": "billing.credit_note.voided",
}
"""Stripe event type -> hub type. Subscription events are refined by ``hub_event_type``
(activated / amended / renewed / cancel_scheduled / past_due); any other Stripe type becomes
``billing.stripe.<stripe type>``. The raw type is always kept in ``data['stripe_type']``."""

_LIVE_STATUSES: Final = frozenset({"active", "trialing"})


# --- small conversions -----------------------------------------------------------------------


def instant(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), UTC)


def _money(units: int | None, currency: str) -> Money:
    return Money.from_stripe_amount(int(units or 0), currency)


def unit_amount(minor: Decimal | str | int | None, currency: str) -> Decimal | None:
    """A Stripe unit amount (minor units, maybe fractional like ``"2257.8"``) in currency units."""
    if minor is None:
        return None
    value = to_decimal(minor, what="unit amount")
    return value.scaleb(-STRIPE_EXPONENTS[currency.upper()])


def _ident(value: Any) -> str | None:
    """An id field that may be expanded into an object."""
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return str(value) if value else None


ident = _ident


def search_literal(value: str) -> str:
    """``value`` quoted for Stripe's search query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def jsonable(value: Any) -> Any:
    """Plain JSON values only: Decimals (the SDK parses ``*_decimal`` fields) become strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


# --- customers -------------------------------------------------------------------------------


def customer_metadata(customer: Customer) -> dict[str, str]:
    """The cross-reference ids Stripe keeps for the hub (``hub_global_id`` is the lookup key)."""
    metadata: dict[str, str] = {}
    if customer.global_id:
        metadata["hub_global_id"] = customer.global_id
    for key, system in (("crm_account_id", "crm"), ("erp_customer_id", "erp")):
        identifier = customer.id_in(system)
        if identifier:
            metadata[key] = identifier
    if customer.currency:
        metadata["preferred_currency"] = customer.currency
    return metadata


def customer_params(customer: Customer) -> dict[str, Any]:
    """Create/update parameters: name, email, phone, billing address, tax status, metadata.

    Stripe customers have no writable currency (it is set by the first invoice), so the
    preferred currency is kept in ``metadata['preferred_currency']``. ``tax_exempt`` is sent when
    the customer is exempt or reverse-charge (the connector also resets a found customer to
    ``none``), so systems without the field (localstripe) take ordinary customers.
    """
    params: dict[str, Any] = {"name": customer.name, "metadata": customer_metadata(customer)}
    if customer.email:
        params["email"] = customer.email
    if customer.phone:
        params["phone"] = customer.phone
    address = customer.billing_address or customer.address
    if address is not None:
        params["address"] = {
            key: value
            for key, value in (
                ("line1", address.line1),
                ("line2", address.line2),
                ("city", address.city),
                ("postal_code", address.postal_code),
                ("state", address.state),
                ("country", address.country),
            )
            if value is not None
        }
    if customer.tax_exemption is not TaxExemption.NONE:
        params["tax_exempt"] = customer.tax_exemption.value
    return params


# --- tax rates -------------------------------------------------------------------------------

TAX_CODE_KEY: Final = "q2c_tax_code"
"""The metadata key a Stripe tax rate is found by: the group's tax code (``DE-VAT-19``)."""
_TREATMENT_KEY: Final = "q2c_tax_treatment"


def tax_rate_params(rate: TaxRate) -> dict[str, Any]:
    """Create parameters of the Stripe tax rate for ``rate``; code and treatment go in metadata."""
    params: dict[str, Any] = {
        "display_name": rate.display_name,
        "percentage": str(rate.percentage),
        "inclusive": rate.inclusive,
        "tax_type": rate.tax_type,
        "description": rate.note or f"{rate.display_name} {rate.percentage}%",
        "metadata": {TAX_CODE_KEY: rate.code, _TREATMENT_KEY: rate.treatment.value},
    }
    if rate.country:
        params["country"] = rate.country
    if rate.jurisdiction:
        params["jurisdiction"] = rate.jurisdiction
    return params


def tax_rate_from_stripe(rate: Mapping[str, Any]) -> TaxRate:
    """The canonical TaxRate of a Stripe tax rate; one the hub did not create is named by its id."""
    metadata: Mapping[str, Any] = rate.get("metadata") or {}
    description = rate.get("description")
    data: dict[str, Any] = {
        "external_ids": {BILLING: str(rate["id"])},
        "code": metadata.get(TAX_CODE_KEY) or str(rate["id"]).upper()[:40],
        "display_name": rate.get("display_name") or str(rate["id"]),
        "percentage": to_decimal(str(rate["percentage"])),
        "inclusive": bool(rate.get("inclusive")),
        "treatment": metadata.get(_TREATMENT_KEY) or "standard",
        "country": rate.get("country") or None,
        "jurisdiction": rate.get("jurisdiction") or None,
        "tax_type": rate.get("tax_type") or "vat",
        "note": description if metadata.get(_TREATMENT_KEY) == "reverse_charge" else None,
    }
    return validate_record(TaxRate, data, record=f"Stripe tax rate {rate['id']}")


def tax_rate_ids(lines: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every tax rate id the lines' ``taxes`` (or older ``tax_amounts``) name."""
    found: set[str] = set()
    for line in lines:
        for entry in line.get("taxes") or []:
            rate = _ident((entry.get("tax_rate_details") or {}).get("tax_rate"))
            if rate:
                found.add(rate)
        for entry in line.get("tax_amounts") or []:
            rate = _ident(entry.get("tax_rate"))
            if rate:
                found.add(rate)
    return found


def _line_rate(line: Mapping[str, Any], rates: Mapping[str, TaxRate]) -> TaxRate | None:
    """The line's one tax rate (None when untaxed, several or unknown)."""
    named = tax_rate_ids([line])
    if len(named) != 1:
        return None
    return rates.get(named.pop())


# --- prices ----------------------------------------------------------------------------------


def price_plan_from_stripe(price: Mapping[str, Any]) -> PricePlan | None:
    """A per-unit month/year price (or legacy plan), or a one-time price (``interval`` None),
    as a PricePlan; None for what the canonical model cannot say (daily, weekly, tiered)."""
    is_plan = price.get("object") == "plan"
    recurring: Mapping[str, Any] = price if is_plan else (price.get("recurring") or {})
    interval = recurring.get("interval")
    one_time = not is_plan and not price.get("recurring")
    if not one_time and interval not in ("month", "year"):
        return None
    if (price.get("billing_scheme") or "per_unit") != "per_unit":
        return None
    currency = str(price["currency"]).upper()
    minor = (
        price.get("amount_decimal", price.get("amount"))
        if is_plan
        else price.get("unit_amount_decimal", price.get("unit_amount"))
    )
    amount = unit_amount(minor, currency)
    if amount is None:
        return None
    product = _ident(price.get("product"))
    if product is None:
        return None
    metadata: Mapping[str, Any] = price.get("metadata") or {}
    external_ids = {BILLING: str(price["id"])}
    if price.get("lookup_key"):
        external_ids["lookup_key"] = str(price["lookup_key"])
    return validate_record(
        PricePlan,
        {
            "global_id": metadata.get("hub_global_id") or None,
            "external_ids": external_ids,
            "product": {"external_ids": {BILLING: product}},
            "currency": currency,
            "unit_amount": amount,
            "interval": interval,
            "interval_count": int(recurring.get("interval_count") or 1),
            "usage_type": recurring.get("usage_type") or "licensed",
            "per_seat": metadata.get("per_seat") == "true",
            "nickname": price.get("nickname") or None,
            "active": bool(price.get("active", True)),
        },
        record=f"Stripe price {price['id']}",
    )


# --- subscriptions ---------------------------------------------------------------------------


def _items(sub: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The items of a subscription (or of a ``previous_attributes``): ``items.data`` or a bare
    list; entries that are no objects are not items."""
    items = sub.get("items") or {}
    data = items.get("data") if isinstance(items, Mapping) else items
    return [i for i in data if isinstance(i, Mapping)] if isinstance(data, list) else []


def _item_price(item: Mapping[str, Any]) -> Mapping[str, Any]:
    price = item.get("price") or item.get("plan") or {}
    return price if isinstance(price, Mapping) else {"id": price}


def subscription_item_ids(sub: Mapping[str, Any]) -> dict[str, str]:
    """Price id -> subscription item id (Stripe allows each price once per subscription)."""
    return {str(_item_price(item).get("id")): str(item["id"]) for item in _items(sub)}


def _period(sub: Mapping[str, Any]) -> tuple[int, int]:
    for source in [*_items(sub), sub]:
        start, end = source.get("current_period_start"), source.get("current_period_end")
        if start is not None and end is not None and int(end) > int(start):
            return int(start), int(end)
    raise ValueError(f"Stripe subscription {sub.get('id')} has no current period")


def _subscription_currency(sub: Mapping[str, Any]) -> str:
    currency = sub.get("currency")
    if not currency:
        currency = next((_item_price(i).get("currency") for i in _items(sub)), None)
    return str(currency or "").upper()


def subscription_from_stripe(sub: Mapping[str, Any]) -> Subscription:
    """The canonical Subscription Stripe holds: ids, status, items, current period, dates."""
    metadata: Mapping[str, Any] = sub.get("metadata") or {}
    start, end = _period(sub)
    items = []
    for item in _items(sub):
        price = _item_price(item)
        usage = (price.get("recurring") or price).get("usage_type") or "licensed"
        entry: dict[str, Any] = {
            "external_ids": {BILLING: str(item["id"])},
            "price_plan": {"external_ids": {BILLING: str(price.get("id"))}},
            "quantity": None if usage == "metered" else int(item.get("quantity") or 0),
        }
        product = _ident(price.get("product"))
        if product:
            entry["product"] = {"external_ids": {BILLING: product}}
        items.append(entry)
    return validate_record(
        Subscription,
        {
            "global_id": metadata.get("hub_global_id") or None,
            "external_ids": {BILLING: str(sub["id"])},
            "contract_number": metadata.get("contract_number") or None,
            "customer": {"external_ids": {BILLING: _ident(sub.get("customer"))}},
            "currency": _subscription_currency(sub),
            "status": sub["status"],
            "items": items,
            "current_period_start": instant(start),
            "current_period_end": instant(end),
            "started_at": instant(sub.get("start_date") or sub.get("start")),
            "cancel_at": instant(sub.get("cancel_at")),
            "canceled_at": instant(sub.get("canceled_at")),
            "tax_rates": _default_tax_rates(sub),
        },
        record=f"Stripe subscription {sub.get('id')}",
    )


def _default_tax_rates(sub: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The subscription's default tax rates the canonical model can hold; a rate it cannot (made
    outside the hub, out of its bounds) is left out rather than blocking the contract's flows."""
    out: list[dict[str, Any]] = []
    for rate in sub.get("default_tax_rates") or []:
        if not isinstance(rate, Mapping):
            continue
        try:
            out.append(tax_rate_from_stripe(rate).model_dump())
        except (ValueError, KeyError):  # RecordValidationError is a ValueError
            continue
    return out


def merge_subscription(
    requested: Subscription,
    stripe_sub: Subscription,
    price_ids: Sequence[str],
    one_time: Collection[str] = (),
) -> Subscription:
    """The hub's subscription with Stripe's ids, status and period filled in.

    ``price_ids[i]`` is the Stripe price the i-th requested item was created with; each item keeps
    its own price reference and gains the id of the Stripe item with that price. Items of a
    ``one_time`` price are left out: Stripe bills them once, on the first invoice, as invoice items.
    """
    by_price = {item.price_plan.id_in(BILLING): item for item in stripe_sub.items}
    items = []
    for mine, price_id in zip(requested.items, price_ids, strict=True):
        if price_id in one_time:
            continue
        theirs = by_price.get(price_id)
        if theirs is None:
            raise ValueError(
                f"{requested.label}: Stripe subscription {stripe_sub.id_in(BILLING)} has no item "
                f"with price {price_id}"
            )
        items.append(
            mine.model_copy(update={"external_ids": {**mine.external_ids, **theirs.external_ids}})
        )
    data = requested.model_dump()
    data.update(
        external_ids={**requested.external_ids, BILLING: stripe_sub.external_ids[BILLING]},
        status=stripe_sub.status,
        items=[item.model_dump() for item in items],
        current_period_start=stripe_sub.current_period_start,
        current_period_end=stripe_sub.current_period_end,
        started_at=stripe_sub.started_at or requested.started_at,
        cancel_at=stripe_sub.cancel_at,
        canceled_at=stripe_sub.canceled_at,
    )
    return validate_record(Subscription, data, record=requested.label)


# --- invoices --------------------------------------------------------------------------------


def _sum_amounts(entries: Sequence[Mapping[str, Any]] | None) -> int:
    return sum(int(e.get("amount") or 0) for e in entries or [])


def _line_taxes(line: Mapping[str, Any]) -> tuple[int | None, int]:
    """(all tax on the line or None if unknown, the part already inside ``amount``)."""
    if line.get("taxes") is not None:
        taxes = line["taxes"]
        inclusive = sum(
            int(t.get("amount") or 0) for t in taxes if t.get("tax_behavior") == "inclusive"
        )
        return _sum_amounts(taxes), inclusive
    if line.get("tax_amounts") is not None:
        amounts = line["tax_amounts"]
        inclusive = sum(int(t.get("amount") or 0) for t in amounts if t.get("inclusive"))
        return _sum_amounts(amounts), inclusive
    return None, 0


def _invoice_tax(invoice: Mapping[str, Any]) -> int:
    """All tax on the invoice, inclusive and exclusive.

    Stripe's ``total`` is the lines' ``amount`` (inclusive tax inside) less discounts and credits
    plus exclusive tax, which is exactly the net lines plus all tax.
    """
    if invoice.get("total_taxes") is not None:
        return _sum_amounts(invoice["total_taxes"])
    if invoice.get("total_tax_amounts") is not None:
        return _sum_amounts(invoice["total_tax_amounts"])
    return int(invoice.get("tax") or 0)


def service_dates(start: int, end: int) -> tuple[date, date]:
    """Stripe's ``[start, end)`` instants as UTC dates, end exclusive, at least one day.

    Both ends take the date they fall on, so consecutive periods anchored mid-day
    (``03:07`` to ``03:07``) stay contiguous and never share a day.
    """
    first = datetime.fromtimestamp(start, UTC).date()
    last = datetime.fromtimestamp(end, UTC).date()
    return first, max(last, first + timedelta(days=1))


def _line(
    line: Mapping[str, Any], currency: str, rates: Mapping[str, TaxRate] | None = None
) -> dict[str, Any]:
    parent: Mapping[str, Any] = line.get("parent") or {}
    details: Mapping[str, Any] = (
        parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    )
    pricing: Mapping[str, Any] = line.get("pricing") or {}
    price_details: Mapping[str, Any] = pricing.get("price_details") or {}
    legacy_price: Mapping[str, Any] = line.get("price") or line.get("plan") or {}
    price_id = _ident(price_details.get("price")) or _ident(legacy_price.get("id"))
    product_id = _ident(price_details.get("product")) or _ident(legacy_price.get("product"))
    item_id = _ident(details.get("subscription_item")) or _ident(line.get("subscription_item"))
    proration = bool(details.get("proration", line.get("proration", False)))
    tax, inclusive = _line_taxes(line)
    net = (
        int(line["amount"])
        - _sum_amounts(line.get("discount_amounts"))
        - _sum_amounts(line.get("pretax_credit_amounts"))
        - inclusive
    )
    unit_minor = pricing.get("unit_amount_decimal")
    if unit_minor is None:
        unit_minor = legacy_price.get("unit_amount_decimal", legacy_price.get("amount"))
    quantity = line.get("quantity_decimal", line.get("quantity"))
    period: Mapping[str, Any] = line.get("period") or {}
    start, end = service_dates(int(period["start"]), int(period["end"]))
    entry: dict[str, Any] = {
        "external_ids": {BILLING: str(line["id"])},
        "description": line.get("description") or None,
        "quantity": to_decimal(quantity) if quantity is not None else None,
        "unit_amount": unit_amount(unit_minor, currency),
        "amount": _money(net, currency),
        "tax": _money(tax, currency) if tax is not None else None,
        "service_start": start,
        "service_end": end,
        "proration": proration,
    }
    if price_id:
        entry["price_plan"] = {"external_ids": {BILLING: price_id}}
    if product_id:
        entry["product"] = {"external_ids": {BILLING: product_id}}
    if item_id:
        entry["subscription_item"] = {"external_ids": {BILLING: item_id}}
    rate = _line_rate(line, rates or {})
    if rate is not None:
        entry["tax_rate"] = rate.model_dump()
    return entry


def invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    parent: Mapping[str, Any] = invoice.get("parent") or {}
    details: Mapping[str, Any] = parent.get("subscription_details") or {}
    return _ident(details.get("subscription")) or _ident(invoice.get("subscription"))


def invoice_from_stripe(
    invoice: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]] | None = None,
    rates: Mapping[str, TaxRate] | None = None,
) -> Invoice:
    """The canonical Invoice; raises RecordValidationError if lines + tax != Stripe's total.

    ``rates`` (Stripe id -> TaxRate) give each taxed line its rate."""
    currency = str(invoice["currency"]).upper()
    all_lines = lines if lines is not None else (invoice.get("lines") or {}).get("data") or []
    tax = _invoice_tax(invoice)
    transitions: Mapping[str, Any] = invoice.get("status_transitions") or {}
    due = instant(invoice.get("due_date"))
    data: dict[str, Any] = {
        "external_ids": {BILLING: str(invoice["id"])},
        "number": invoice.get("number") or None,
        "customer": {"external_ids": {BILLING: _ident(invoice.get("customer"))}},
        "currency": currency,
        "status": invoice.get("status") or "draft",
        "issued_at": instant(transitions.get("finalized_at")),
        "due_date": due.date() if due else None,
        "lines": [_line(line, currency, rates) for line in all_lines],
        "tax": _money(tax, currency),
        "total": _money(int(invoice["total"]), currency),
        "amount_paid": _money(invoice.get("amount_paid"), currency),
        "credit_applied": _money(_credit_applied(invoice), currency),
    }
    subscription = invoice_subscription(invoice)
    if subscription:
        data["subscription"] = {"external_ids": {BILLING: subscription}}
    return validate_record(Invoice, data, record=f"Stripe invoice {invoice['id']}")


def _credit_applied(invoice: Mapping[str, Any]) -> int:
    """What the customer's credit balance paid of the invoice at finalization: the balance went
    from ``starting_balance`` up to ``ending_balance`` (both <= 0 for a credit, minor units)."""
    if invoice.get("ending_balance") is None:
        return 0
    starting = int(invoice.get("starting_balance") or 0)
    ending = int(invoice["ending_balance"])
    if int(invoice["total"]) <= 0:
        return 0
    return max(0, min(ending, 0) - min(starting, 0))


def payment_from_invoice(
    invoice: Mapping[str, Any],
    *,
    declined: tuple[str, str] | None = None,
    at: datetime | None = None,
) -> Payment:
    """A payment attempt on ``invoice``: succeeded, or failed with (code, reason) if declined."""
    currency = str(invoice["currency"]).upper()
    transitions: Mapping[str, Any] = invoice.get("status_transitions") or {}
    charged = invoice.get("amount_paid") if declined is None else invoice.get("amount_due")
    created = at or instant(transitions.get("paid_at")) or instant(invoice.get("created"))
    data: dict[str, Any] = {
        "customer": {"external_ids": {BILLING: _ident(invoice.get("customer"))}},
        "invoice": {"external_ids": {BILLING: str(invoice["id"])}},
        "amount": _money(charged, currency),
        "status": "failed" if declined else "succeeded",
        "created_at": created,
        "method": "card",
    }
    intent = _ident(invoice.get("payment_intent")) or _ident(invoice.get("charge"))
    if intent:
        data["external_ids"] = {BILLING: intent}
    if declined is not None:
        data["failure_code"], data["failure_reason"] = declined
    return validate_record(Payment, data, record=f"payment of Stripe invoice {invoice['id']}")


def payment_from_charge(charge: Mapping[str, Any], invoice_id: str | None) -> Payment:
    """A Stripe charge as the hub's payment, keyed by its payment intent (the charge id when it
    has none); a refund shows as status ``refunded`` with the cumulative amount refunded."""
    currency = str(charge["currency"]).upper()
    refunded = int(charge.get("amount_refunded") or 0)
    status = charge.get("status")
    data: dict[str, Any] = {
        "external_ids": {BILLING: _ident(charge.get("payment_intent")) or str(charge["id"])},
        "customer": {"external_ids": {BILLING: _ident(charge.get("customer"))}},
        "amount": _money(charge.get("amount"), currency),
        "status": "failed" if status == "failed" else "refunded" if refunded else "succeeded",
        "created_at": instant(charge.get("created")),
        "method": str((charge.get("payment_method_details") or {}).get("type") or "card"),
    }
    if invoice_id:
        data["invoice"] = {"external_ids": {BILLING: invoice_id}}
    if refunded:
        data["amount_refunded"] = _money(refunded, currency)
    if status == "failed":
        data["failure_code"] = charge.get("failure_code") or "card_declined"
        data["failure_reason"] = charge.get("failure_message") or "declined"
    return validate_record(Payment, data, record=f"Stripe charge {charge['id']}")


# --- events ----------------------------------------------------------------------------------


def event_subject(obj: Mapping[str, Any]) -> str:
    """The business key: the subscription where there is one, else the customer, else the id."""
    kind = obj.get("object")
    if kind == "subscription":
        return str(obj["id"])
    subscription = (
        invoice_subscription(obj) if kind == "invoice" else _ident(obj.get("subscription"))
    )
    if subscription:
        return subscription
    if kind == "customer":
        return str(obj["id"])
    return _ident(obj.get("customer")) or str(obj.get("id") or "")


def _quantities(items: Sequence[Mapping[str, Any]]) -> set[tuple[str | None, int | None]]:
    return {(_ident(_item_price(i).get("id")), i.get("quantity")) for i in items}


def _period_moved(old_items: Sequence[Mapping[str, Any]], obj: Mapping[str, Any]) -> bool:
    """An item's ``current_period_start`` (where current API versions keep the period) moved."""
    now = {str(i.get("id")): i.get("current_period_start") for i in _items(obj)}
    return any(
        "current_period_start" in old
        and str(old.get("id")) in now
        and old["current_period_start"] != now[str(old.get("id"))]
        for old in old_items
    )


def _subscription_change(obj: Mapping[str, Any], previous: Mapping[str, Any]) -> str:
    """Name a ``customer.subscription.updated`` by what changed. Stripe puts a changed list
    whole in ``previous_attributes`` (``items: {data: [every item as it was]}``), so the old
    items are compared with the new: other seats or prices -> amended (first: a phase change
    at the boundary moves the period too); the same seats in a later period -> renewed
    (periods on the items, current API versions, or on the subscription, older ones)."""
    status, before = obj.get("status"), previous.get("status")
    if before is not None and before != status:
        if status == "active":
            return "billing.subscription.activated"
        if status == "past_due":
            return "billing.subscription.past_due"
    if "items" in previous:
        old_items = _items(previous)
        if _quantities(old_items) != _quantities(_items(obj)):
            return "billing.subscription.amended"
        if _period_moved(old_items, obj):
            return "billing.subscription.renewed"
    if "quantity" in previous or "plan" in previous:
        return "billing.subscription.amended"
    if "current_period_start" in previous:
        return "billing.subscription.renewed"
    if previous.get("cancel_at_period_end") is False and obj.get("cancel_at_period_end"):
        return "billing.subscription.cancel_scheduled"
    return "billing.subscription.updated"


def hub_event_type(
    stripe_type: str, obj: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> str:
    """The hub's ``billing.<entity>.<verb>`` name for a Stripe event (see ``EVENT_TYPES``)."""
    if stripe_type == "customer.subscription.created" and obj.get("status") in _LIVE_STATUSES:
        return "billing.subscription.activated"
    if stripe_type == "customer.subscription.updated":
        return _subscription_change(obj, previous or {})
    return EVENT_TYPES.get(stripe_type, f"billing.stripe.{stripe_type}")


def contract_number(obj: Mapping[str, Any]) -> str | None:
    """The hub's contract number that billing keeps on a subscription or its invoices."""
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    if obj.get("object") == "subscription" and meta.get("contract_number"):
        return str(meta["contract_number"])
    parent: Mapping[str, Any] = obj.get("parent") or {}
    details: Mapping[str, Any] = (
        parent.get("subscription_details") or obj.get("subscription_details") or {}
    )
    number = (details.get("metadata") or {}).get("contract_number")
    return str(number) if number else None


def billing_event(event: Mapping[str, Any]) -> BillingEvent:
    """A Stripe event as the hub logs it: the canonical keys ``BillingEvent`` names, with the
    raw type and object snapshot beside them for the hub's read model."""
    body: Mapping[str, Any] = event.get("data") or {}
    obj: Mapping[str, Any] = body.get("object") or {}
    previous: Mapping[str, Any] = body.get("previous_attributes") or {}
    stripe_type = str(event["type"])
    created = instant(event.get("created")) or datetime.now(UTC)
    data: dict[str, Any] = {
        "stripe_type": stripe_type,
        "object_type": obj.get("object"),
        "object_id": obj.get("id"),
        "customer": obj["id"] if obj.get("object") == "customer" else _ident(obj.get("customer")),
        "contract_number": contract_number(obj),
        "object": jsonable(obj),
    }
    if previous:
        data["previous_attributes"] = jsonable(previous)
    return BillingEvent(
        id=str(event["id"]),
        type=hub_event_type(stripe_type, obj, previous),
        created=created,
        subject=event_subject(obj),
        data=data,
    )


# --- reconciliation ledger -------------------------------------------------------------------

_LEDGER_SUBSCRIPTION_STATUS: Final[Mapping[str, str]] = {
    "active": "active",
    "trialing": "active",
    "past_due": "past_due",
    "unpaid": "past_due",
    "canceled": "canceled",
}


def ledger_customer(customer: Mapping[str, Any]) -> LedgerEntry:
    """A customer for reconciliation: keyed by e-mail; ``balance`` is its credit (negative)."""
    metadata: Mapping[str, Any] = customer.get("metadata") or {}
    currency = str(customer.get("currency") or metadata.get("preferred_currency") or "").upper()
    links = {"hub": str(metadata["hub_global_id"])} if metadata.get("hub_global_id") else {}
    email = str(customer.get("email") or "").strip().lower()
    return LedgerEntry(
        kind=LedgerKind.CUSTOMER,
        system=BILLING,
        id=str(customer["id"]),
        number=email or None,
        customer=str(customer["id"]),
        currency=currency or None,
        balance=_money(customer.get("balance"), currency) if currency else None,
        status="active",
        links=links,
    )


def ledger_subscription(sub: Mapping[str, Any]) -> LedgerEntry:
    """A contract for reconciliation: its contract number and normalised status."""
    metadata: Mapping[str, Any] = sub.get("metadata") or {}
    quantity = sum(int(item.get("quantity") or 0) for item in _items(sub))
    return LedgerEntry(
        kind=LedgerKind.CONTRACT,
        system=BILLING,
        id=str(sub["id"]),
        number=metadata.get("contract_number") or None,
        customer=_ident(sub.get("customer")),
        contract=metadata.get("contract_number") or None,
        currency=_subscription_currency(sub) or None,
        status=_LEDGER_SUBSCRIPTION_STATUS.get(str(sub.get("status")), "pending"),
        quantity=quantity,
        state=str(sub.get("status") or ""),
    )


def ledger_invoice(invoice: Mapping[str, Any]) -> LedgerEntry:
    """A finalised invoice for reconciliation; ``balance`` is the amount remaining."""
    currency = str(invoice["currency"]).upper()
    owed = int(invoice.get("amount_remaining") or 0)
    subscription = invoice_subscription(invoice)
    return LedgerEntry(
        kind=LedgerKind.INVOICE,
        system=BILLING,
        id=str(invoice["id"]),
        number=invoice.get("number") or None,
        customer=_ident(invoice.get("customer")),
        currency=currency,
        total=_money(int(invoice["total"]), currency),
        tax=_money(_invoice_tax(invoice), currency),
        balance=_money(owed, currency),
        status="paid" if owed == 0 else "open",
        links={"subscription": subscription} if subscription else {},
        state=str(invoice.get("status") or ""),
    )


def ledger_charge(charge: Mapping[str, Any], invoice: str | None) -> LedgerEntry:
    """A collected payment with what was refunded of it and, when known, the invoice it paid."""
    currency = str(charge["currency"]).upper()
    return LedgerEntry(
        kind=LedgerKind.PAYMENT,
        system=BILLING,
        id=str(charge["id"]),
        customer=_ident(charge.get("customer")),
        currency=currency,
        total=_money(charge.get("amount"), currency),
        refunded=_money(charge.get("amount_refunded"), currency),
        status="refunded" if charge.get("amount_refunded") else "paid",
        links={"invoice": invoice} if invoice else {},
        state=str(charge.get("status") or ""),
    )
