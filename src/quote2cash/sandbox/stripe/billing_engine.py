"""Invoices, prorations, renewals and test-clock time travel: the emulator's billing rules.

Money stays integer minor units; fractional results (prorations, decimal unit prices, metered usage)
are computed exactly with ``Fraction`` and rounded once per line, half away from zero.

Proration (Stripe's seconds-based method): changing an item at time ``t`` inside the period
``[start, end)`` credits the old quantity for the unused time and charges the new quantity for the
remaining time, each as its own line: ``-round(old_qty * unit * (end - t) / (end - start))`` and
``+round(new_qty * unit * (end - t) / (end - start))``.

Discounts (coupons redeemed on a subscription item or on the subscription):

- A regular line keeps its gross ``amount``; each item discount takes, in order, from what the
  previous ones left: a percent coupon ``round(base * percent_off / 100)`` (``round_minor``: half
  away from zero, i.e. half-up for these positive bases), an amount coupon ``min(amount_off,
  base)`` (same currency only), listed in the line's ``discounts`` and ``discount_amounts``.
  Subscription-level (invoice) discounts then take from each discountable line's remaining base
  (percent per line; an amount coupon split over the lines in proportion, floored, the remainder
  on the last line) and appear in ``discount_amounts`` and the invoice's ``discounts``.
- Invoice ``subtotal`` is the sum of line amounts less item discounts ("item discounts are already
  incorporated", Stripe's field description), ``total`` also less invoice discounts;
  ``total_discount_amounts`` sums every line's ``discount_amounts`` per discount.
- Prorations follow Stripe's default ``proration_discounts: included``: the credit and the charge
  are computed on the exactly discounted full-period amount and rounded once per line, and carry
  ``discount_amounts`` of 0 for the discounts used.
- Durations: ``forever`` always applies; ``repeating`` applies to a line whose period starts
  before the discount's ``end``; ``once`` applies to the first invoice it touches only. An ended
  discount is dropped from its item or subscription when the next invoice finds it ended.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from .errors import StripeApiError, invalid_state
from .payments import confirm_payment_intent, new_payment_intent
from .render import render
from .store import JSON, Store, public
from .taxation import line_taxes, split_tax, total_taxes


def round_minor(value: Fraction) -> int:
    """Round an exact amount to whole minor units, half away from zero."""
    magnitude = abs(value)
    whole = int(magnitude)
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return whole if value >= 0 else -whole


def unit_amount(price: JSON) -> Fraction:
    return Fraction(Decimal(price["unit_amount_decimal"]))


def add_interval(anchor: int, steps: int, interval: str, count: int) -> int:
    """``anchor`` moved by ``steps * count`` intervals; months clamp to the month's last day."""
    start = datetime.fromtimestamp(anchor, UTC)
    n = steps * count
    if interval == "day":
        return int((start + timedelta(days=n)).timestamp())
    if interval == "week":
        return int((start + timedelta(weeks=n)).timestamp())
    months = n if interval == "month" else 12 * n
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


def _fmt_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y")


def product_name(store: Store, price: JSON) -> str:
    product = store.lookup("product", price["product"])
    return str(product["name"]) if product else str(price["product"])


# --- invoice items and lines -----------------------------------------------------------------


def new_invoiceitem(
    store: Store,
    *,
    customer: JSON,
    amount: int,
    currency: str,
    description: str | None,
    period: tuple[int, int],
    quantity: int = 1,
    price: JSON | None = None,
    unit_amount_decimal: str | None = None,
    proration: bool = False,
    subscription: str | None = None,
    subscription_item: str | None = None,
    invoice: str | None = None,
    metadata: dict[str, str] | None = None,
    discountable: bool = True,
    discounts: list[str] | None = None,
    discounts_applied: list[str] | None = None,
    tax_rates: list[JSON] | None = None,
) -> JSON:
    """A pending (or attached to ``invoice``) invoice item; announces ``invoiceitem.created``.

    ``discounts`` are the item discounts a proration's amount is already net of;
    ``discounts_applied`` all discounts it is net of (subscription-level ones too).
    """
    now = store.now_for_clock(customer["test_clock"])
    item: JSON = {
        "id": store.new_id("ii"),
        "object": "invoiceitem",
        "amount": amount,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "date": now,
        "description": description,
        "discountable": discountable and not proration,
        "discounts": list(discounts or []),
        "invoice": invoice,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "net_amount": amount,
        "parent": (
            {
                "subscription_details": {
                    "subscription": subscription,
                    "subscription_item": subscription_item,
                },
                "type": "subscription_details",
            }
            if subscription
            else None
        ),
        "period": {"end": period[1], "start": period[0]},
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]} if price else None,
            "type": "price_details",
            "unit_amount_decimal": unit_amount_decimal
            if unit_amount_decimal is not None
            else (price["unit_amount_decimal"] if price else str(amount)),
        },
        "proration": proration,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [dict(r) for r in tax_rates or []],
        "test_clock": customer["test_clock"],
        "_discounts_applied": list(discounts_applied or []),
    }
    store.add("invoiceitem", item)
    store.emit("invoiceitem.created", public(item), created=now)
    return item


def add_line(
    store: Store,
    invoice: JSON,
    *,
    amount: int,
    description: str | None,
    period: tuple[int, int],
    quantity: int | None,
    price: JSON | None,
    proration: bool = False,
    invoice_item: str | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    unit_amount_decimal: str | None = None,
    quantity_decimal: str | None = None,
    metadata: dict[str, str] | None = None,
    discounts: list[str] | None = None,
    discount_amounts: list[JSON] | None = None,
    tax_rates: list[JSON] | None = None,
) -> JSON:
    """Append a line to a draft invoice; totals are recomputed at once.

    ``discounts``/``discount_amounts`` are the line's item discounts (fixed here); invoice-level
    discount shares are added to ``discount_amounts`` by ``refresh_amounts``. Without
    ``tax_rates`` the line is taxed at its subscription item's rates, else the invoice's defaults.
    """
    if not tax_rates and subscription_item is not None:
        owner = store.lookup("subscription_item", subscription_item)
        tax_rates = owner["tax_rates"] if owner is not None else []
    details: JSON = {"credited_items": None}
    if subscription_item is not None:
        parent: JSON = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": details,
                "subscription": subscription,
                "subscription_item": subscription_item,
            },
            "type": "subscription_item_details",
        }
    else:
        parent = {
            "invoice_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": details,
                "subscription": subscription,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    line: JSON = {
        "id": store.new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": invoice["currency"],
        "description": description,
        "discount_amounts": [dict(d) for d in discount_amounts or []],
        "discountable": not proration,
        "discounts": list(discounts or []),
        "invoice": invoice["id"],
        "livemode": False,
        "metadata": dict(metadata or {}),
        "parent": parent,
        "period": {"end": period[1], "start": period[0]},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]} if price else None,
            "type": "price_details",
            "unit_amount_decimal": unit_amount_decimal
            if unit_amount_decimal is not None
            else (price["unit_amount_decimal"] if price else None),
        },
        "quantity": quantity,
        "quantity_decimal": quantity_decimal
        if quantity_decimal is not None
        else (str(quantity) if quantity is not None else None),
        "subscription": subscription,
        "subtotal": amount,
        "taxes": [],
        "_invoiceitem": invoice_item,
        "_item_discount_amounts": [dict(d) for d in discount_amounts or []],
        "_tax_rates": [dict(r) for r in tax_rates or []],
    }
    store.add("line_item", line)
    invoice["_lines"].append(line["id"])
    refresh_amounts(invoice, store)
    return line


def line_from_invoiceitem(store: Store, invoice: JSON, item: JSON) -> JSON:
    """Move an invoice item onto ``invoice`` as a line (it stops being pending)."""
    item["invoice"] = invoice["id"]
    parent = item["parent"] or {}
    details = parent.get("subscription_details") or {}
    price_details = item["pricing"]["price_details"]
    price = store.lookup("price", price_details["price"]) if price_details else None
    applied = list(item.get("_discounts_applied", []))
    for discount_id in applied:
        discount = store.lookup("discount", discount_id)
        if discount is not None:
            _mark_used(discount, invoice["id"])
    return add_line(
        store,
        invoice,
        amount=item["amount"],
        description=item["description"],
        period=(item["period"]["start"], item["period"]["end"]),
        quantity=item["quantity"],
        price=price,
        proration=item["proration"],
        invoice_item=item["id"],
        subscription=details.get("subscription"),
        subscription_item=details.get("subscription_item"),
        unit_amount_decimal=item["pricing"]["unit_amount_decimal"],
        metadata=item["metadata"],
        discounts=item["discounts"],
        discount_amounts=[{"amount": 0, "discount": d} for d in applied],
        tax_rates=item["tax_rates"],
    )


def pending_invoiceitems(
    store: Store, customer_id: str, subscription: str | None = None
) -> list[JSON]:
    """The customer's invoice items not yet on an invoice, optionally one subscription's only."""
    out = []
    for item in store.all("invoiceitem"):
        if item["customer"] != customer_id or item["invoice"] is not None:
            continue
        parent = item["parent"] or {}
        owner = (parent.get("subscription_details") or {}).get("subscription")
        if subscription is not None and owner != subscription:
            continue
        out.append(store.get("invoiceitem", item["id"]))
    return out


# --- invoices --------------------------------------------------------------------------------


def new_invoice(
    store: Store,
    customer: JSON,
    *,
    currency: str,
    billing_reason: str,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
    subscription: JSON | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    auto_advance: bool | None = None,
    default_payment_method: str | None = None,
    period: tuple[int, int] | None = None,
) -> JSON:
    """A draft invoice with the customer snapshot Stripe copies at creation."""
    now = store.now_for_clock(customer["test_clock"])
    if collection_method == "send_invoice" and days_until_due is None:
        days_until_due = 30
    invoice: JSON = {
        "id": store.new_id("in"),
        "object": "invoice",
        "account_country": "US",
        "account_name": "quote2cash sandbox",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance if auto_advance is not None else billing_reason != "manual",
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "created": now,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer["address"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": customer["shipping"],
        "customer_tax_exempt": customer["tax_exempt"],
        "customer_tax_ids": [],
        "days_until_due": days_until_due,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [dict(r) for r in subscription["default_tax_rates"]]
        if subscription
        else [],
        "description": description,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": (
            {
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(subscription["metadata"]),
                    "subscription": subscription["id"],
                },
                "type": "subscription_details",
            }
            if subscription
            else None
        ),
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period[1] if period else now,
        "period_start": period[0] if period else now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": subscription["id"] if subscription else None,
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": customer["test_clock"],
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
        "_lines": [],
        "_net_due": 0,
    }
    if subscription is not None and billing_reason != "manual":
        invoice["discounts"] = _live_discounts(store, subscription, now, invoice["id"])
    if customer["currency"] is None:
        customer["currency"] = currency
    store.add("invoice", invoice)
    return invoice


def refresh_amounts(invoice: JSON, store: Store) -> None:
    """Recompute totals from the lines; amounts due follow the status and the credit notes.

    While a draft, invoice-level discounts are shared out over the lines afresh.
    """
    lines = [store.get("line_item", i) for i in invoice["_lines"]]
    if invoice["status"] == "draft":
        _share_invoice_discounts(store, invoice, lines)
    gross = sum(int(line["amount"]) for line in lines)
    item_off = sum(
        int(d["amount"]) for line in lines for d in line.get("_item_discount_amounts", [])
    )
    per_discount: dict[str, int] = {}
    for line in lines:
        for entry in line["discount_amounts"]:
            per_discount[entry["discount"]] = per_discount.get(entry["discount"], 0) + int(
                entry["amount"]
            )
    all_off = sum(per_discount.values())
    invoice["total_discount_amounts"] = [
        {"amount": amount, "discount": discount_id} for discount_id, amount in per_discount.items()
    ]
    if invoice["status"] == "draft":
        for line in lines:
            net = int(line["amount"]) - sum(int(d["amount"]) for d in line["discount_amounts"])
            rates = line.get("_tax_rates") or invoice["default_tax_rates"]
            line["taxes"] = line_taxes(rates, net, invoice["customer_tax_exempt"])
    entries = [entry for line in lines for entry in line["taxes"]]
    exclusive, inclusive = split_tax(entries)
    invoice["total_taxes"] = total_taxes(entries)
    invoice["subtotal"] = gross - item_off
    invoice["subtotal_excluding_tax"] = gross - item_off - inclusive
    total = gross - all_off + exclusive
    invoice["total"] = total
    invoice["total_excluding_tax"] = total - exclusive - inclusive
    if invoice["status"] == "draft":
        invoice["_net_due"] = max(total, 0)
    due = max(invoice["_net_due"] - invoice["pre_payment_credit_notes_amount"], 0)
    invoice["amount_due"] = due
    invoice["amount_remaining"] = max(due - invoice["amount_paid"], 0)


def emit_invoice(store: Store, type_: str, invoice: JSON, before: JSON | None = None) -> None:
    """Announce ``invoice`` as it is now (``before``: as served before an update)."""
    store.emit(
        type_,
        render(store, invoice),
        before=before,
        created=store.now_for_customer(invoice["customer"]),
    )


def finalize_invoice(store: Store, invoice: JSON) -> None:
    """Draft -> open: number assigned, customer balance applied; nothing due means paid at once."""
    if invoice["status"] != "draft":
        raise invalid_state(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    customer = store.get("customer", invoice["customer"])
    now = store.now_for_clock(customer["test_clock"])
    refresh_amounts(invoice, store)
    starting = customer["balance"]
    net = invoice["total"] + starting
    invoice["starting_balance"] = starting
    invoice["ending_balance"] = min(net, 0)
    customer["balance"] = min(net, 0)
    invoice["_net_due"] = max(net, 0)
    invoice["status"] = "open"
    invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice["effective_at"] = now
    invoice["status_transitions"]["finalized_at"] = now
    if invoice["collection_method"] == "send_invoice":
        invoice["due_date"] = now + 86400 * int(invoice["days_until_due"] or 0)
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/sandbox/{invoice['id']}"
    refresh_amounts(invoice, store)
    emit_invoice(store, "invoice.finalized", invoice)
    if invoice["amount_remaining"] == 0:
        mark_paid(store, invoice, now)


def mark_paid(store: Store, invoice: JSON, now: int) -> None:
    """Paid: announces ``invoice.payment_succeeded``/``invoice.paid``; revives the subscription."""
    invoice["status"] = "paid"
    invoice["status_transitions"]["paid_at"] = now
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    refresh_amounts(invoice, store)
    emit_invoice(store, "invoice.payment_succeeded", invoice)
    emit_invoice(store, "invoice.paid", invoice)
    subscription_id = invoice["subscription"]
    if subscription_id:
        sub = store.lookup("subscription", subscription_id)
        if sub is not None and sub["status"] in ("incomplete", "past_due", "unpaid"):
            before = render(store, sub)
            sub["status"] = "active"
            store.emit(
                "customer.subscription.updated", render(store, sub), before=before, created=now
            )


def payment_method_for(store: Store, invoice: JSON, override: str | None) -> str | None:
    """Which card pays: explicit, then invoice, subscription, customer default (as Stripe)."""
    if override:
        return override
    if invoice["default_payment_method"]:
        return str(invoice["default_payment_method"])
    if invoice["subscription"]:
        sub = store.lookup("subscription", invoice["subscription"])
        if sub is not None and sub["default_payment_method"]:
            return str(sub["default_payment_method"])
    customer = store.get("customer", invoice["customer"])
    default = customer["invoice_settings"]["default_payment_method"]
    return str(default) if default else None


def _invoice_payment(store: Store, invoice: JSON, intent: JSON, now: int) -> JSON:
    record: JSON = {
        "id": store.new_id("inpay"),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": intent["amount"],
        "created": now,
        "currency": intent["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": intent["id"], "type": "payment_intent"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }
    return store.add("invoice_payment", record)


def pay_invoice(
    store: Store, invoice: JSON, *, payment_method: str | None = None, out_of_band: bool = False
) -> StripeApiError | None:
    """Collect the amount remaining; a decline is recorded on the invoice and returned."""
    if invoice["status"] == "draft":
        finalize_invoice(store, invoice)
    if invoice["status"] == "paid":
        raise invalid_state("Invoice is already paid", code="invoice_already_paid")
    if invoice["status"] == "void":
        raise invalid_state(
            "This invoice has been voided and cannot be paid.", code="invoice_not_editable"
        )
    customer = store.get("customer", invoice["customer"])
    now = store.now_for_clock(customer["test_clock"])
    if out_of_band:
        invoice["amount_paid"] += invoice["amount_remaining"]
        mark_paid(store, invoice, now)
        return None
    if invoice["amount_remaining"] == 0:
        mark_paid(store, invoice, now)
        return None
    pm_id = payment_method_for(store, invoice, payment_method)
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    if pm_id is None:
        missing = StripeApiError(
            400,
            "invalid_request_error",
            "This customer has no attached payment source or default payment method. "
            "Please consider adding a default payment method.",
        )
        _record_failure(store, invoice, now)
        return missing
    reason = invoice["billing_reason"]
    description = {
        "subscription_create": "Subscription creation",
        "subscription_update": "Subscription update",
        "subscription_cycle": "Subscription cycle",
    }.get(reason, "Payment for Invoice")
    intent = new_payment_intent(
        store,
        amount=invoice["amount_remaining"],
        currency=invoice["currency"],
        customer=customer["id"],
        description=description,
        payment_method=pm_id,
    )
    record = _invoice_payment(store, invoice, intent, now)
    declined = confirm_payment_intent(store, intent)
    if declined is not None:
        _record_failure(store, invoice, now)
        return declined
    invoice["amount_paid"] += intent["amount"]
    record["amount_paid"] = intent["amount"]
    record["status"] = "paid"
    record["status_transitions"]["paid_at"] = now
    invoice["_payment_intent"] = intent["id"]
    mark_paid(store, invoice, now)
    store.emit("invoice_payment.paid", public(record), created=now)
    return None


RETRY_DELAY = 3 * 86400
MAX_ATTEMPTS = 4


def _record_failure(store: Store, invoice: JSON, now: int) -> None:
    """A failed collection: renewals go ``past_due`` and are retried every 3 days of clock time;
    after the 4th failed attempt the subscription is canceled (Stripe's default dunning outcome).
    """
    retrying = (
        invoice["collection_method"] == "charge_automatically"
        and invoice["billing_reason"] != "subscription_create"
        and invoice["attempt_count"] < MAX_ATTEMPTS
    )
    invoice["next_payment_attempt"] = now + RETRY_DELAY if retrying else None
    emit_invoice(store, "invoice.payment_failed", invoice)
    sub = store.lookup("subscription", invoice["subscription"])
    if sub is None or invoice["billing_reason"] == "subscription_create":
        return
    if sub["status"] == "active":
        before = render(store, sub)
        sub["status"] = "past_due"
        store.emit("customer.subscription.updated", render(store, sub), before=before, created=now)
    if (
        sub["status"] == "past_due"
        and invoice["collection_method"] == "charge_automatically"
        and invoice["attempt_count"] >= MAX_ATTEMPTS
    ):
        end_subscription(store, sub, now, reason="payment_failed")


def void_invoice(store: Store, invoice: JSON) -> None:
    """Open or uncollectible -> void; customer balance applied at finalization is given back."""
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid_state(
            f"You can only void open or uncollectible invoices; this one is {invoice['status']}.",
            code="invoice_not_editable",
        )
    now = store.now_for_customer(invoice["customer"])
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = now
    invoice["auto_advance"] = False
    invoice["amount_remaining"] = 0
    customer = store.lookup("customer", invoice["customer"])
    if customer is not None and invoice["starting_balance"] != invoice["ending_balance"]:
        customer["balance"] += invoice["starting_balance"] - invoice["ending_balance"]
    emit_invoice(store, "invoice.voided", invoice)


# --- discounts -------------------------------------------------------------------------------


def discount_ended(discount: JSON, period_start: int, invoice_id: str | None) -> bool:
    """Whether ``discount`` no longer applies to a charge for a period starting at
    ``period_start`` on invoice ``invoice_id`` (None: a proration not yet on an invoice)."""
    duration = discount["_coupon"]["duration"]
    if duration == "once":
        first = discount["_first_invoice"]
        return first is not None and first != invoice_id
    if duration == "repeating":
        return period_start >= int(discount["end"])
    return False


def _mark_used(discount: JSON, invoice_id: str) -> None:
    if discount["_coupon"]["duration"] == "once" and discount["_first_invoice"] is None:
        discount["_first_invoice"] = invoice_id


def _exact_off(discount: JSON, base: Fraction, currency: str) -> Fraction | None:
    """The exact amount ``discount`` takes off ``base``; None if it cannot apply (currency)."""
    coupon = discount["_coupon"]
    if coupon["percent_off"] is not None:
        return base * Fraction(Decimal(coupon["percent_off"])) / 100
    if coupon["currency"] != currency:
        return None
    return min(Fraction(int(coupon["amount_off"])), base)


def _live_discounts(store: Store, owner: JSON, at: int, invoice_id: str | None) -> list[str]:
    """``owner``'s discounts still in force at ``at``; ended ones are dropped from ``owner``."""
    live = []
    for discount_id in list(owner["discounts"]):
        discount = store.lookup("discount", discount_id)
        if discount is None or discount_ended(discount, at, invoice_id):
            owner["discounts"].remove(discount_id)
            continue
        live.append(discount_id)
    return live


def item_discounts(
    store: Store, invoice: JSON, item: JSON, amount: int, period_start: int
) -> tuple[list[str], list[JSON]]:
    """The item discounts for a line of ``amount`` (gross) whose period starts at
    ``period_start``: their ids and per-discount amounts, each rounded half-up to the cent."""
    if amount <= 0:
        return [], []
    ids: list[str] = []
    amounts: list[JSON] = []
    base = amount
    for discount_id in _live_discounts(store, item, period_start, invoice["id"]):
        discount = store.get("discount", discount_id)
        off = _exact_off(discount, Fraction(base), invoice["currency"])
        if off is None:
            continue
        taken = round_minor(off)
        _mark_used(discount, invoice["id"])
        ids.append(discount_id)
        amounts.append({"amount": taken, "discount": discount_id})
        base -= taken
    return ids, amounts


def _net_of_discounts(
    store: Store, full: Fraction, in_force: tuple[list[str], list[str]], at: int, currency: str
) -> tuple[Fraction, list[str]]:
    """``full`` less the item then subscription discounts in force at ``at``, exactly."""
    used: list[str] = []
    net = full
    for discount_id in [*in_force[0], *(d for d in in_force[1] if d not in in_force[0])]:
        discount = store.lookup("discount", discount_id)
        if discount is None or discount_ended(discount, at, None) or net <= 0:
            continue
        off = _exact_off(discount, net, currency)
        if off is None:
            continue
        net -= off
        used.append(discount_id)
    return net, used


def _share_invoice_discounts(store: Store, invoice: JSON, lines: list[JSON]) -> None:
    """Put each invoice-level discount's share on the discountable lines' ``discount_amounts``."""
    for line in lines:
        line["discount_amounts"] = [dict(d) for d in line.get("_item_discount_amounts", [])]
    for discount_id in invoice["discounts"]:
        discount = store.lookup("discount", discount_id)
        if discount is None:
            continue
        eligible: list[tuple[JSON, int]] = []
        for line in lines:
            if not line["discountable"] or discount_ended(
                discount, int(line["period"]["start"]), invoice["id"]
            ):
                continue
            base = int(line["amount"]) - sum(int(d["amount"]) for d in line["discount_amounts"])
            if base > 0:
                eligible.append((line, base))
        if not eligible:
            continue
        coupon = discount["_coupon"]
        if coupon["percent_off"] is not None:
            percent = Fraction(Decimal(coupon["percent_off"]))
            shares = [round_minor(Fraction(base) * percent / 100) for _, base in eligible]
        elif coupon["currency"] == invoice["currency"]:
            pool = sum(base for _, base in eligible)
            off = min(int(coupon["amount_off"]), pool)
            shares = [off * base // pool for _, base in eligible]
            shares[-1] += off - sum(shares)
        else:
            continue
        for (line, _), share in zip(eligible, shares, strict=True):
            line["discount_amounts"].append({"amount": share, "discount": discount_id})
        _mark_used(discount, invoice["id"])


# --- subscriptions ---------------------------------------------------------------------------


def item_price(store: Store, item: JSON) -> JSON:
    return store.get("price", item["_price"])


def is_metered(price: JSON) -> bool:
    return bool(price["recurring"] and price["recurring"]["usage_type"] == "metered")


def licensed_description(store: Store, price: JSON, quantity: int) -> str:
    recurring = price["recurring"] or {}
    unit = Decimal(price["unit_amount_decimal"]) / 100
    return (
        f"{quantity} × {product_name(store, price)} "  # noqa: RUF001
        f"(at {unit:.2f} {price['currency'].upper()} / {recurring.get('interval', 'once')})"
    )


def add_period_lines(
    store: Store, invoice: JSON, sub: JSON, start: int, end: int, *, trial: bool = False
) -> None:
    """Charge each licensed item for the period ahead (a trial period is a zero-amount line)."""
    for item_id in sub["_items"]:
        item = store.get("subscription_item", item_id)
        price = item_price(store, item)
        if is_metered(price):
            continue
        quantity = int(item["quantity"])
        amount = 0 if trial else round_minor(unit_amount(price) * quantity)
        discounts, discount_amounts = item_discounts(store, invoice, item, amount, start)
        add_line(
            store,
            invoice,
            amount=amount,
            description=f"Trial period for {product_name(store, price)}"
            if trial
            else licensed_description(store, price, quantity),
            period=(start, end),
            quantity=quantity,
            price=price,
            subscription=sub["id"],
            subscription_item=item["id"],
            discounts=discounts,
            discount_amounts=discount_amounts,
        )


def metered_usage(store: Store, sub: JSON, price: JSON, start: int, end: int) -> Fraction:
    """Aggregate the meter's events for this customer with ``start <= timestamp < end``."""
    meter = store.get("billing.meter", price["recurring"]["meter"])
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    values = [
        Fraction(Decimal(e["payload"].get(value_key, "0")))
        for e in store.all("billing.meter_event")
        if e["event_name"] == meter["event_name"]
        and not e.get("_canceled")
        and e["payload"].get(customer_key) == sub["customer"]
        and start <= e["timestamp"] < end
    ]
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return Fraction(len(values))
    if formula == "last":
        return values[-1] if values else Fraction(0)
    return sum(values, Fraction(0))


def add_usage_lines(store: Store, invoice: JSON, sub: JSON, start: int, end: int) -> None:
    """Bill metered items in arrears for ``[start, end)``."""
    for item_id in sub["_items"]:
        item = store.get("subscription_item", item_id)
        price = item_price(store, item)
        if not is_metered(price):
            continue
        usage = metered_usage(store, sub, price, start, end)
        quantity_decimal = str(Decimal(usage.numerator) / Decimal(usage.denominator))
        amount = round_minor(unit_amount(price) * usage)
        discounts, discount_amounts = item_discounts(store, invoice, item, amount, start)
        add_line(
            store,
            invoice,
            amount=amount,
            description=(
                f"{product_name(store, price)} (usage {_fmt_date(start)} - {_fmt_date(end)})"
            ),
            period=(start, end),
            quantity=int(usage) if usage.denominator == 1 else None,
            quantity_decimal=quantity_decimal,
            price=price,
            subscription=sub["id"],
            subscription_item=item["id"],
            discounts=discounts,
            discount_amounts=discount_amounts,
        )


def proration_lines(
    store: Store,
    sub: JSON,
    item: JSON,
    *,
    at: int,
    old: tuple[JSON, int] | None,
    new: tuple[JSON, int] | None,
    old_discounts: tuple[list[str], list[str]] | None = None,
) -> list[JSON]:
    """Pending invoice items crediting ``old`` and charging ``new`` for ``[at, period_end)``.

    Each is net of the discounts then in force (``old_discounts``: the item's and the
    subscription's before the change; the new side uses the current ones): the full-period amount
    is discounted exactly, prorated, then rounded once.
    """
    start, end = sub["_period_start"], sub["_period_end"]
    remaining, length = end - at, end - start
    if remaining <= 0 or length <= 0 or sub["status"] == "trialing":
        return []
    customer = store.get("customer", sub["customer"])
    current = (list(item["discounts"]), list(sub["discounts"]))
    items = []
    for sign, change, in_force in ((-1, old, old_discounts or current), (1, new, current)):
        if change is None:
            continue
        price, quantity = change
        if is_metered(price) or quantity == 0:
            continue
        full, used = _net_of_discounts(
            store, unit_amount(price) * quantity, in_force, at, price["currency"]
        )
        exact = full * Fraction(remaining, length)
        amount = sign * round_minor(exact)
        label = "Unused time" if sign < 0 else "Remaining time"
        items.append(
            new_invoiceitem(
                store,
                customer=customer,
                amount=amount,
                currency=price["currency"],
                description=(
                    f"{label} on {quantity} × {product_name(store, price)} "  # noqa: RUF001
                    f"after {_fmt_date(at)}"
                ),
                period=(at, end),
                quantity=quantity,
                price=price,
                unit_amount_decimal=str(Decimal(amount) / quantity),
                proration=True,
                subscription=sub["id"],
                subscription_item=item["id"],
                discounts=[d for d in used if d in in_force[0]],
                discounts_applied=used,
            )
        )
    return items


def invoice_pending_now(store: Store, sub: JSON, billing_reason: str) -> StripeApiError | None:
    """Put the subscription's pending items on an invoice, finalize it and try to collect.

    Returns the payment failure, if any (already recorded on the invoice and subscription).
    """
    customer = store.get("customer", sub["customer"])
    if not pending_invoiceitems(store, customer["id"], sub["id"]):
        return None
    now = store.now_for_clock(customer["test_clock"])
    invoice = subscription_invoice(store, sub, billing_reason=billing_reason, period=(now, now))
    return issue_subscription_invoice(store, sub, invoice)


def subscription_invoice(
    store: Store,
    sub: JSON,
    *,
    billing_reason: str,
    period: tuple[int, int],
    usage: tuple[int, int] | None = None,
) -> JSON:
    """A draft invoice of the subscription for ``period``: its pending invoice items, then the
    metered usage between ``usage``'s bounds when given; Stripe's one shape for cycle invoices."""
    customer = store.get("customer", sub["customer"])
    invoice = new_invoice(
        store,
        customer,
        currency=sub["currency"],
        billing_reason=billing_reason,
        collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
        subscription=sub,
        period=period,
    )
    for ii in pending_invoiceitems(store, customer["id"], sub["id"]):
        line_from_invoiceitem(store, invoice, ii)
    if usage is not None:
        add_usage_lines(store, invoice, sub, *usage)
    return invoice


def issue_subscription_invoice(
    store: Store, sub: JSON, invoice: JSON, *, announced: bool = False
) -> StripeApiError | None:
    """Announce (unless ``announced``), finalize and (charging automatically) collect it;
    returns a payment failure."""
    if not announced:
        emit_invoice(store, "invoice.created", invoice)
    sub["latest_invoice"] = invoice["id"]
    finalize_invoice(store, invoice)
    if invoice["status"] == "open" and sub["collection_method"] == "charge_automatically":
        return pay_invoice(store, invoice)
    return None


def cycle_subscription(store: Store, sub: JSON) -> None:
    """Cross a period boundary: cancel if asked, else invoice usage, prorations, next period."""
    boundary = sub["_period_end"]
    start = sub["_period_start"]
    customer = store.get("customer", sub["customer"])
    cancel_at = sub["cancel_at"]
    if sub["cancel_at_period_end"] or (cancel_at is not None and cancel_at <= boundary):
        has_usage = any(
            is_metered(item_price(store, store.get("subscription_item", i))) for i in sub["_items"]
        )
        if has_usage or pending_invoiceitems(store, customer["id"], sub["id"]):
            invoice = subscription_invoice(
                store,
                sub,
                billing_reason="subscription_cycle",
                period=(start, boundary),
                usage=(start, boundary),
            )
            issue_subscription_invoice(store, sub, invoice)
        end_subscription(store, sub, boundary, reason="cancellation_requested")
        return
    before = render(store, sub)
    ending_trial = sub["status"] == "trialing"
    if ending_trial:
        sub["status"] = "active"
    next_index = sub["_period_index"] + 1
    recurring = sub["_recurring"]
    next_end = add_interval(
        sub["billing_cycle_anchor"],
        next_index + 1,
        recurring["interval"],
        recurring["interval_count"],
    )
    invoice = subscription_invoice(
        store,
        sub,
        billing_reason="subscription_cycle",
        period=(start, boundary),
        usage=None if ending_trial else (start, boundary),
    )
    sub["_period_index"] = next_index
    sub["_period_start"] = boundary
    sub["_period_end"] = next_end
    add_period_lines(store, invoice, sub, boundary, next_end)
    # As Stripe: the renewal invoice is created, then one ``customer.subscription.updated``
    # whose previous_attributes hold the items with their old period (the period lives on the
    # items), the previous latest invoice and, at a trial's end, ``status: trialing``.
    emit_invoice(store, "invoice.created", invoice)
    sub["latest_invoice"] = invoice["id"]
    store.emit("customer.subscription.updated", render(store, sub), before=before, created=boundary)
    issue_subscription_invoice(store, sub, invoice, announced=True)


def end_subscription(store: Store, sub: JSON, when: int, *, reason: str) -> None:
    """Canceled at ``when``; announces ``customer.subscription.deleted``."""
    sub["status"] = "canceled"
    sub["ended_at"] = when
    if sub["canceled_at"] is None:
        sub["canceled_at"] = when
    sub["cancellation_details"]["reason"] = reason
    store.emit("customer.subscription.deleted", render(store, sub), created=when)


def advance_clock(store: Store, clock: JSON, target: int) -> None:
    """Move a test clock forward: renewals, expiries, payment retries and invoices falling
    overdue (``invoice.overdue`` once, at the due date), in time order."""
    customers = {c["id"] for c in store.all("customer") if c["test_clock"] == clock["id"]}

    def due() -> list[tuple[int, str, JSON]]:
        out: list[tuple[int, str, JSON]] = []
        for sub in store.all("subscription"):
            if sub["customer"] not in customers:
                continue
            if (
                sub["status"] in ("active", "past_due", "trialing", "unpaid")
                and sub["_period_end"] <= target
            ):
                out.append((sub["_period_end"], "renew", sub))
            elif sub["status"] == "incomplete" and sub["created"] + 23 * 3600 <= target:
                out.append((sub["created"] + 23 * 3600, "expire", sub))
        for invoice in store.all("invoice"):
            if invoice["customer"] not in customers or invoice["status"] != "open":
                continue
            retry_at = invoice["next_payment_attempt"]
            if retry_at is not None and retry_at <= target:
                out.append((retry_at, "retry", invoice))
            due_at = invoice["due_date"]
            if due_at is not None and due_at <= target and not invoice.get("_overdue"):
                out.append((due_at, "overdue", invoice))
        return sorted(out, key=lambda entry: entry[0])

    while True:
        pending = due()
        if not pending:
            break
        when, action, target_obj = pending[0]
        clock["frozen_time"] = when
        if action == "overdue":
            invoice = store.get("invoice", target_obj["id"])
            invoice["_overdue"] = True
            emit_invoice(store, "invoice.overdue", invoice)
            continue
        if action == "retry":
            invoice = store.get("invoice", target_obj["id"])
            invoice["next_payment_attempt"] = None
            pay_invoice(store, invoice)
            continue
        sub = store.get("subscription", target_obj["id"])
        if action == "expire":
            before = render(store, sub)
            sub["status"] = "incomplete_expired"
            latest = store.lookup("invoice", sub["latest_invoice"] or "")
            if latest is not None and latest["status"] == "open":
                void_invoice(store, latest)
            store.emit(
                "customer.subscription.updated", render(store, sub), before=before, created=when
            )
            continue
        cycle_subscription(store, sub)
    clock["frozen_time"] = target
