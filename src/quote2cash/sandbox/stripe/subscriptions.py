"""Subscriptions and subscription items: create, change quantities with prorations, cancel."""

from __future__ import annotations

from .billing_engine import (
    add_interval,
    add_period_lines,
    add_usage_lines,
    emit_invoice,
    end_subscription,
    finalize_invoice,
    invoice_pending_now,
    is_metered,
    issue_subscription_invoice,
    item_price,
    line_from_invoiceitem,
    new_invoice,
    pay_invoice,
    pending_invoiceitems,
    proration_lines,
    subscription_invoice,
)
from .coupons import resolve_discounts
from .errors import invalid_param, invalid_state, missing_param, resource_missing
from .one_off import bill_one_offs, parse_one_offs
from .params import Params
from .payments import attach_payment_method, resolve_payment_method
from .render import render
from .routing import route
from .search import search
from .store import JSON, Store, paginate
from .tax_rates import tax_rate_snapshots

PRORATION_BEHAVIORS = ["create_prorations", "none", "always_invoice"]


def _check_price(
    store: Store, sub_currency: str | None, price_id: str, param: str, recurring: JSON | None
) -> JSON:
    price = store.get("price", price_id, param)
    if price["recurring"] is None:
        raise invalid_param(
            param,
            "The price specified is set to `type=one_time` but this field only accepts "
            "prices with `type=recurring`.",
        )
    if not price["active"]:
        raise invalid_param(
            param, "The price specified is inactive. This field only accepts active prices."
        )
    if sub_currency is not None and price["currency"] != sub_currency:
        raise invalid_param(param, "All prices on a subscription must have the same currency.")
    if recurring is not None and (
        price["recurring"]["interval"] != recurring["interval"]
        or price["recurring"]["interval_count"] != recurring["interval_count"]
    ):
        raise invalid_param(
            param, "All prices on a subscription must have the same recurring interval."
        )
    return price


def _new_item(
    store: Store,
    sub: JSON,
    price: JSON,
    quantity: int | None,
    metadata: dict[str, str],
    created: int,
) -> JSON:
    item: JSON = {
        "id": store.new_id("si"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": created,
        "discounts": [],
        "metadata": metadata,
        "subscription": sub["id"],
        "tax_rates": [],
        "_price": price["id"],
    }
    if not is_metered(price):
        item["quantity"] = 1 if quantity is None else quantity
    elif quantity is not None:
        raise invalid_param(
            "items[0][quantity]", "Quantity should not be specified where usage_type is `metered`."
        )
    store.add("subscription_item", item)
    sub["_items"].append(item["id"])
    return item


def _resolve_default_pm(store: Store, customer_id: str, value: str | None) -> str | None:
    if value is None:
        return None
    pm = resolve_payment_method(store, value, "default_payment_method")
    if pm["customer"] is None:
        attach_payment_method(store, pm, customer_id)
    elif pm["customer"] != customer_id:
        raise invalid_param(
            "default_payment_method", "The payment method belongs to another customer."
        )
    return str(pm["id"])


_SUB_CREATE = (
    "customer",
    "items",
    "collection_method",
    "days_until_due",
    "default_payment_method",
    "payment_behavior",
    "proration_behavior",
    "metadata",
    "cancel_at_period_end",
    "description",
    "currency",
    "off_session",
    "billing_cycle_anchor",
    "trial_period_days",
    "trial_end",
    "discounts",
    "add_invoice_items",
    "default_tax_rates",
)


@route("POST", "/v1/subscriptions", atomic=True)
def create_subscription(store: Store, p: Params) -> JSON:
    p.allow(*_SUB_CREATE)
    customer = store.get("customer", p.req_str("customer"), "customer")
    entries = p.items("items")
    if not entries:
        raise missing_param("items")
    collection = (
        p.str_("collection_method", choices=["charge_automatically", "send_invoice"])
        or "charge_automatically"
    )
    days_until_due = p.int_("days_until_due", minimum=0)
    if collection == "send_invoice" and days_until_due is None:
        raise invalid_param(
            "days_until_due",
            "Missing required param: days_until_due when collection_method is send_invoice.",
            code="parameter_missing",
        )
    behavior = _payment_behavior(p)
    prices = []
    recurring: JSON | None = None
    currency: str | None = None
    for entry in entries:
        entry.allow("price", "plan", "quantity", "metadata", "discounts", "tax_rates")
        key = "plan" if entry.has("plan") and not entry.has("price") else "price"
        price = _check_price(
            store, currency, entry.req_str(key), f"{entry.prefix}[{key}]", recurring
        )
        recurring = recurring or price["recurring"]
        currency = currency or price["currency"]
        prices.append((price, entry.int_("quantity", minimum=0), entry.metadata(), entry))
    assert recurring is not None and currency is not None
    one_offs = parse_one_offs(store, p, currency)
    if customer["currency"] not in (None, currency):
        raise invalid_param(
            "currency",
            "You cannot combine currencies on a single customer. "
            "This customer has had a subscription or "
            f"payment in {customer['currency']}, but you are trying to pay in {currency}.",
        )
    now = store.now_for_clock(customer["test_clock"])
    trial_end = _trial_end(p, now)
    anchor = p.int_("billing_cycle_anchor") or trial_end or now
    if anchor != (trial_end or now):
        raise invalid_param(
            "billing_cycle_anchor",
            "The emulator supports only a billing cycle anchored at the start (or trial end).",
        )
    sub: JSON = {
        "id": store.new_id("sub"),
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection,
        "created": now,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "days_until_due": days_until_due,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": p.str_("description"),
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {
            "account_tax_ids": None,
            "custom_fields": None,
            "description": None,
            "footer": None,
            "issuer": {"type": "self"},
        },
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": {"enabled": False},
        "metadata": p.metadata(),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "incomplete",
        "test_clock": customer["test_clock"],
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": now if trial_end else None,
        "_items": [],
        "_period_index": -1 if trial_end else 0,
        "_period_start": now,
        "_period_end": trial_end
        or add_interval(anchor, 1, recurring["interval"], recurring["interval_count"]),
        "_recurring": dict(recurring),
    }
    sub["default_payment_method"] = _resolve_default_pm(
        store, customer["id"], p.str_("default_payment_method")
    )
    sub["default_tax_rates"] = tax_rate_snapshots(store, p, "default_tax_rates") or []
    if p.bool_("cancel_at_period_end"):
        sub["cancel_at_period_end"] = True
        sub["cancel_at"] = sub["_period_end"]
    store.add("subscription", sub)
    sub["discounts"] = resolve_discounts(store, p, "discounts", sub=sub, item=None, current=[])
    for price, quantity, metadata, entry in prices:
        item = _new_item(store, sub, price, quantity, metadata, now)
        item["discounts"] = resolve_discounts(
            store, entry, "discounts", sub=sub, item=item, current=[]
        )
        item["tax_rates"] = tax_rate_snapshots(store, entry, "tax_rates") or []
    invoice = new_invoice(
        store,
        customer,
        currency=currency,
        billing_reason="subscription_create",
        collection_method=collection,
        days_until_due=days_until_due,
        subscription=sub,
        period=(now, now),
    )
    add_period_lines(store, invoice, sub, now, sub["_period_end"], trial=bool(trial_end))
    bill_one_offs(store, sub, invoice, one_offs, now, sub["_period_end"])
    sub["latest_invoice"] = invoice["id"]
    if trial_end:
        sub["status"] = "trialing"
    store.emit("customer.subscription.created", render(store, sub), created=now)
    emit_invoice(store, "invoice.created", invoice)
    finalize_invoice(store, invoice)
    if trial_end:
        return render(store, sub)
    # Paying the first invoice activates the subscription and announces it (``mark_paid``);
    # only an activation without payment (``send_invoice``) is announced here, so once.
    if invoice["status"] == "paid":
        return render(store, sub)
    if collection == "send_invoice":
        before = render(store, sub)
        sub["status"] = "active"
        store.emit("customer.subscription.updated", render(store, sub), before=before, created=now)
    elif behavior != "default_incomplete":
        error = pay_invoice(store, invoice)
        if error is not None and behavior == "error_if_incomplete":
            raise error
    return render(store, sub)


def _trial_end(p: Params, now: int) -> int | None:
    """When a trial was asked for (``trial_end`` or ``trial_period_days``), its end."""
    days = p.int_("trial_period_days", minimum=0)
    end = p.int_("trial_end")
    if days is not None and end is not None:
        raise invalid_param("trial_end", "You may pass either trial_end or trial_period_days.")
    if days:
        return now + days * 86400
    if end is not None and end <= now:
        raise invalid_param("trial_end", "trial_end must be in the future.")
    return end


@route("GET", "/v1/subscriptions/search")
def search_subscriptions(store: Store, p: Params) -> JSON:
    return search(store, p, "subscription", lambda obj: render(store, obj))


@route("GET", "/v1/subscriptions/{id}")
def retrieve_subscription(store: Store, p: Params, id: str) -> JSON:
    return render(store, store.get("subscription", id))


def _live(sub: JSON) -> None:
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid_state(
            "A canceled subscription can only update its cancellation_details and metadata.",
            param="id",
        )


def _proration_time(store: Store, sub: JSON, p: Params) -> int:
    at = p.int_("proration_date")
    if at is None:
        return store.now_for_customer(sub["customer"])
    if not sub["_period_start"] <= at <= sub["_period_end"]:
        raise invalid_param(
            "proration_date", "proration_date must be within the current billing period."
        )
    return at


def change_item(
    store: Store,
    sub: JSON,
    item: JSON,
    *,
    price: JSON | None,
    quantity: int | None,
    behavior: str,
    at: int,
    old_discounts: tuple[list[str], list[str]] | None = None,
) -> bool:
    """Apply a price/quantity change; returns whether proration items were created.

    ``old_discounts`` (item's, subscription's) are those in force before this request changed
    them; the credit for the old configuration is net of them.
    """
    old_price = item_price(store, item)
    new_price = price or old_price
    old_qty = int(item.get("quantity", 0))
    new_qty = old_qty if quantity is None else quantity
    if new_price["id"] == old_price["id"] and new_qty == old_qty:
        return False
    if is_metered(new_price) and quantity is not None:
        raise invalid_param(
            "quantity", "Quantity should not be specified where usage_type is `metered`."
        )
    item["_price"] = new_price["id"]
    if not is_metered(new_price):
        item["quantity"] = new_qty
    else:
        item.pop("quantity", None)
    if behavior == "none":
        return False
    created = proration_lines(
        store,
        sub,
        item,
        at=at,
        old=(old_price, old_qty),
        new=(new_price, new_qty),
        old_discounts=old_discounts,
    )
    return bool(created)


def _payment_behavior(p: Params) -> str:
    return (
        p.str_(
            "payment_behavior",
            choices=[
                "allow_incomplete",
                "default_incomplete",
                "error_if_incomplete",
                "pending_if_incomplete",
            ],
        )
        or "allow_incomplete"
    )


def _after_change(
    store: Store, sub: JSON, behavior: str, prorated: bool, payment_behavior: str
) -> None:
    """Invoice prorations now if asked; ``error_if_incomplete`` fails the request on a decline."""
    if behavior != "always_invoice" or not prorated:
        return
    error = invoice_pending_now(store, sub, "subscription_update")
    if error is not None and payment_behavior == "error_if_incomplete":
        raise error


def apply_item_changes(
    store: Store,
    sub: JSON,
    entries: list[Params],
    behavior: str,
    at: int,
    old_sub_discounts: list[str] | None = None,
) -> bool:
    """Add, change or delete items as ``items[]`` asks; returns whether prorations were created.

    ``old_sub_discounts``: the subscription's discounts before this request replaced them.
    """
    prorated = False
    sub_before = list(sub["discounts"]) if old_sub_discounts is None else old_sub_discounts
    for entry in entries:
        entry.allow(
            "id", "price", "plan", "quantity", "deleted", "metadata", "clear_usage", "discounts"
        )
        if entry.has("plan") and not entry.has("price"):
            entry.data["price"] = entry.data.pop("plan")
        item_id = entry.str_("id")
        price = (
            _check_price(
                store,
                sub["currency"],
                entry.req_str("price"),
                f"{entry.prefix}[price]",
                sub["_recurring"],
            )
            if entry.has("price")
            else None
        )
        quantity = entry.int_("quantity", minimum=0)
        if item_id is None:
            if price is None:
                raise missing_param(f"{entry.prefix}[price]")
            item = _new_item(store, sub, price, quantity, entry.metadata(), at)
            item["discounts"] = resolve_discounts(
                store, entry, "discounts", sub=sub, item=item, current=[]
            )
            if behavior != "none":
                prorated |= bool(
                    proration_lines(
                        store, sub, item, at=at, old=None, new=(price, int(item.get("quantity", 0)))
                    )
                )
            continue
        item = store.get("subscription_item", item_id, f"{entry.prefix}[id]")
        if item["subscription"] != sub["id"]:
            raise invalid_param(
                f"{entry.prefix}[id]",
                f"Subscription item {item_id} does not belong to {sub['id']}.",
            )
        old_discounts = (list(item["discounts"]), sub_before)
        if entry.bool_("deleted"):
            prorated |= _delete_item(store, sub, item, behavior, at, old_discounts)
            continue
        if entry.has("discounts"):
            item["discounts"] = resolve_discounts(
                store, entry, "discounts", sub=sub, item=item, current=item["discounts"]
            )
        item["metadata"] = entry.metadata(item["metadata"])
        prorated |= change_item(
            store,
            sub,
            item,
            price=price,
            quantity=quantity,
            behavior=behavior,
            at=at,
            old_discounts=old_discounts,
        )
    return prorated


@route("POST", "/v1/subscriptions/{id}", atomic=True)
def update_subscription(store: Store, p: Params, id: str) -> JSON:
    p.allow(
        "items",
        "proration_behavior",
        "proration_date",
        "cancel_at_period_end",
        "cancel_at",
        "metadata",
        "default_payment_method",
        "collection_method",
        "days_until_due",
        "description",
        "payment_behavior",
        "off_session",
        "discounts",
        "default_tax_rates",
    )
    sub = store.get("subscription", id)
    before = render(store, sub)
    if (
        p.has("items")
        or p.has("proration_behavior")
        or p.has("collection_method")
        or p.has("discounts")
    ):
        _live(sub)
    behavior = p.str_("proration_behavior", choices=PRORATION_BEHAVIORS) or "create_prorations"
    payment_behavior = _payment_behavior(p)
    at = _proration_time(store, sub, p)
    old_sub_discounts = list(sub["discounts"])
    if p.has("discounts"):
        sub["discounts"] = resolve_discounts(
            store, p, "discounts", sub=sub, item=None, current=sub["discounts"]
        )
    prorated = apply_item_changes(
        store, sub, p.items("items"), behavior, at, old_sub_discounts=old_sub_discounts
    )
    if p.has("cancel_at_period_end"):
        flag = bool(p.bool_("cancel_at_period_end"))
        sub["cancel_at_period_end"] = flag
        sub["cancel_at"] = sub["_period_end"] if flag else None
        sub["canceled_at"] = store.now_for_customer(sub["customer"]) if flag else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None
    if p.has("default_payment_method"):
        sub["default_payment_method"] = _resolve_default_pm(
            store, sub["customer"], p.str_("default_payment_method")
        )
    if p.has("collection_method"):
        sub["collection_method"] = p.str_(
            "collection_method", choices=["charge_automatically", "send_invoice"]
        )
    if p.has("days_until_due"):
        sub["days_until_due"] = p.int_("days_until_due", minimum=0)
    if p.has("description"):
        sub["description"] = p.str_("description")
    default_rates = tax_rate_snapshots(store, p, "default_tax_rates")
    if default_rates is not None:
        sub["default_tax_rates"] = default_rates
    sub["metadata"] = p.metadata(sub["metadata"])
    _after_change(store, sub, behavior, prorated, payment_behavior)
    store.emit("customer.subscription.updated", render(store, sub), before=before)
    return render(store, sub)


def _delete_item(
    store: Store,
    sub: JSON,
    item: JSON,
    behavior: str,
    at: int,
    old_discounts: tuple[list[str], list[str]] | None = None,
) -> bool:
    if len(sub["_items"]) == 1:
        raise invalid_state(
            "A subscription must have at least one active plan. "
            "To cancel a subscription, delete it."
        )
    prorated = False
    if behavior != "none":
        price = item_price(store, item)
        prorated = bool(
            proration_lines(
                store,
                sub,
                item,
                at=at,
                old=(price, int(item.get("quantity", 0))),
                new=None,
                old_discounts=old_discounts,
            )
        )
    sub["_items"].remove(item["id"])
    item["_deleted"] = True
    return prorated


def cancel_subscription_now(store: Store, sub: JSON, *, prorate: bool, invoice_now: bool) -> None:
    """End the subscription now; optionally credit unused time and invoice what is pending."""
    now = store.now_for_customer(sub["customer"])
    if prorate:
        for item_id in sub["_items"]:
            item = store.get("subscription_item", item_id)
            proration_lines(
                store,
                sub,
                item,
                at=now,
                old=(item_price(store, item), int(item.get("quantity", 0))),
                new=None,
            )
    if invoice_now:
        invoice = subscription_invoice(
            store,
            sub,
            billing_reason="subscription_cycle",
            period=(sub["_period_start"], now),
            usage=(sub["_period_start"], now + 1),
        )
        if invoice["_lines"]:
            issue_subscription_invoice(store, sub, invoice)
        else:
            store.remove("invoice", invoice["id"])
    sub["canceled_at"] = now
    end_subscription(store, sub, now, reason="cancellation_requested")


@route("DELETE", "/v1/subscriptions/{id}", atomic=True)
def cancel_subscription(store: Store, p: Params, id: str) -> JSON:
    p.allow("prorate", "invoice_now", "cancellation_details")
    sub = store.get("subscription", id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid_state(
            "This subscription has already been canceled.",
        )
    details = p.sub("cancellation_details")
    if details is not None:
        sub["cancellation_details"]["comment"] = details.str_("comment")
        sub["cancellation_details"]["feedback"] = details.str_("feedback")
    cancel_subscription_now(
        store, sub, prorate=bool(p.bool_("prorate")), invoice_now=bool(p.bool_("invoice_now"))
    )
    return render(store, sub)


@route("GET", "/v1/subscriptions")
def list_subscriptions(store: Store, p: Params) -> JSON:
    customer = p.str_("customer")
    price = p.str_("price")
    status = p.str_("status") or "all_but_canceled"
    items = []
    for sub in store.all("subscription"):
        if customer not in (None, sub["customer"]):
            continue
        if status == "all_but_canceled" and sub["status"] in ("canceled", "incomplete_expired"):
            continue
        if status not in ("all", "all_but_canceled") and sub["status"] != status:
            continue
        if price is not None and not any(
            store.get("subscription_item", i)["_price"] == price for i in sub["_items"]
        ):
            continue
        items.append(render(store, sub))
    return paginate(items, p, "/v1/subscriptions")


# --- subscription items ----------------------------------------------------------------------


@route("POST", "/v1/subscription_items", atomic=True)
def create_subscription_item(store: Store, p: Params) -> JSON:
    p.allow(
        "subscription",
        "price",
        "quantity",
        "metadata",
        "proration_behavior",
        "proration_date",
        "payment_behavior",
        "discounts",
    )
    sub = store.get("subscription", p.req_str("subscription"), "subscription")
    _live(sub)
    price = _check_price(store, sub["currency"], p.req_str("price"), "price", sub["_recurring"])
    behavior = p.str_("proration_behavior", choices=PRORATION_BEHAVIORS) or "create_prorations"
    payment_behavior = _payment_behavior(p)
    at = _proration_time(store, sub, p)
    before = render(store, sub)
    item = _new_item(store, sub, price, p.int_("quantity", minimum=0), p.metadata(), at)
    item["discounts"] = resolve_discounts(store, p, "discounts", sub=sub, item=item, current=[])
    prorated = False
    if behavior != "none":
        prorated = bool(
            proration_lines(
                store, sub, item, at=at, old=None, new=(price, int(item.get("quantity", 0)))
            )
        )
    _after_change(store, sub, behavior, prorated, payment_behavior)
    store.emit("customer.subscription.updated", render(store, sub), before=before)
    return render(store, item)


@route("GET", "/v1/subscription_items/{id}")
def retrieve_subscription_item(store: Store, p: Params, id: str) -> JSON:
    item = store.get("subscription_item", id)
    if item.get("_deleted"):
        raise resource_missing("subscription item", id)
    return render(store, item)


@route("POST", "/v1/subscription_items/{id}", atomic=True)
def update_subscription_item(store: Store, p: Params, id: str) -> JSON:
    p.allow(
        "price",
        "quantity",
        "metadata",
        "proration_behavior",
        "proration_date",
        "payment_behavior",
        "off_session",
        "discounts",
    )
    item = store.get("subscription_item", id)
    sub = store.get("subscription", item["subscription"])
    _live(sub)
    before = render(store, sub)
    old_discounts = (list(item["discounts"]), list(sub["discounts"]))
    if p.has("discounts"):
        item["discounts"] = resolve_discounts(
            store, p, "discounts", sub=sub, item=item, current=item["discounts"]
        )
    behavior = p.str_("proration_behavior", choices=PRORATION_BEHAVIORS) or "create_prorations"
    payment_behavior = _payment_behavior(p)
    at = _proration_time(store, sub, p)
    price = (
        _check_price(store, sub["currency"], p.req_str("price"), "price", sub["_recurring"])
        if p.has("price")
        else None
    )
    item["metadata"] = p.metadata(item["metadata"])
    prorated = change_item(
        store,
        sub,
        item,
        price=price,
        quantity=p.int_("quantity", minimum=0),
        behavior=behavior,
        at=at,
        old_discounts=old_discounts,
    )
    _after_change(store, sub, behavior, prorated, payment_behavior)
    store.emit("customer.subscription.updated", render(store, sub), before=before)
    return render(store, item)


@route("DELETE", "/v1/subscription_items/{id}", atomic=True)
def delete_subscription_item(store: Store, p: Params, id: str) -> JSON:
    p.allow("proration_behavior", "proration_date", "clear_usage")
    item = store.get("subscription_item", id)
    sub = store.get("subscription", item["subscription"])
    _live(sub)
    behavior = p.str_("proration_behavior", choices=PRORATION_BEHAVIORS) or "create_prorations"
    payment_behavior = _payment_behavior(p)
    before = render(store, sub)
    prorated = _delete_item(store, sub, item, behavior, _proration_time(store, sub, p))
    _after_change(store, sub, behavior, prorated, payment_behavior)
    store.emit("customer.subscription.updated", render(store, sub), before=before)
    return {"id": id, "object": "subscription_item", "deleted": True}


@route("GET", "/v1/subscription_items")
def list_subscription_items(store: Store, p: Params) -> JSON:
    sub = store.get("subscription", p.req_str("subscription"), "subscription")
    items = [render(store, store.get("subscription_item", i)) for i in sub["_items"]]
    return paginate(items, p, "/v1/subscription_items")


# --- invoice previews ------------------------------------------------------------------------


@route("POST", "/v1/invoices/create_preview")
def create_preview(store: Store, p: Params) -> JSON:
    """Preview the next invoice (optionally after proposed item changes); nothing is kept."""
    p.allow("customer", "subscription", "subscription_details", "preview_mode", "currency")
    store.begin()
    try:
        preview = _build_preview(store, p)
    finally:
        store.rollback()
    preview_id = "upcoming_" + store.new_id("in")
    preview["id"] = preview_id
    for line in preview["lines"]["data"]:
        line["invoice"] = preview_id
    preview["lines"]["url"] = f"/v1/invoices/{preview_id}/lines"
    return preview


def _build_preview(store: Store, p: Params) -> JSON:
    sub_id = p.str_("subscription")
    sub = store.get("subscription", sub_id, "subscription") if sub_id else None
    customer_id = p.str_("customer") or (sub["customer"] if sub else None)
    if customer_id is None:
        raise missing_param("customer")
    customer = store.get("customer", customer_id, "customer")
    if sub is not None and sub["customer"] != customer_id:
        raise invalid_param("subscription", "The subscription belongs to another customer.")
    behavior = "create_prorations"
    at = store.now_for_clock(customer["test_clock"])
    details = p.sub("subscription_details")
    if details is not None:
        if sub is None:
            raise invalid_param(
                "subscription",
                "The emulator previews subscription_details only for an existing subscription.",
            )
        _live(sub)
        details.allow("items", "proration_behavior", "proration_date", "cancel_at_period_end")
        behavior = (
            details.str_("proration_behavior", choices=PRORATION_BEHAVIORS) or "create_prorations"
        )
        at = _proration_time(store, sub, details)
        apply_item_changes(store, sub, details.items("items"), behavior, at)
        if details.bool_("cancel_at_period_end"):
            sub["cancel_at_period_end"] = True
    if sub is None:
        pending = pending_invoiceitems(store, customer_id)
        currency = pending[0]["currency"] if pending else (customer["currency"] or "usd")
        invoice = new_invoice(store, customer, currency=currency, billing_reason="upcoming")
        for ii in pending:
            line_from_invoiceitem(store, invoice, ii)
        when = at
    elif behavior == "always_invoice":
        invoice = new_invoice(
            store,
            customer,
            currency=sub["currency"],
            billing_reason="subscription_update",
            collection_method=sub["collection_method"],
            subscription=sub,
            period=(at, at),
        )
        for ii in pending_invoiceitems(store, customer_id, sub["id"]):
            line_from_invoiceitem(store, invoice, ii)
        when = at
    else:
        start, boundary = sub["_period_start"], sub["_period_end"]
        invoice = new_invoice(
            store,
            customer,
            currency=sub["currency"],
            billing_reason="subscription_cycle",
            collection_method=sub["collection_method"],
            subscription=sub,
            period=(start, boundary),
        )
        for ii in pending_invoiceitems(store, customer_id, sub["id"]):
            line_from_invoiceitem(store, invoice, ii)
        add_usage_lines(store, invoice, sub, start, boundary)
        if not sub["cancel_at_period_end"]:
            recurring = sub["_recurring"]
            next_end = add_interval(
                sub["billing_cycle_anchor"],
                sub["_period_index"] + 2,
                recurring["interval"],
                recurring["interval_count"],
            )
            add_period_lines(store, invoice, sub, boundary, next_end)
        when = boundary
    preview = render(store, invoice)
    net = preview["total"] + customer["balance"]
    preview.update(
        created=when,
        starting_balance=customer["balance"],
        ending_balance=min(net, 0),
        amount_due=max(net, 0),
        amount_remaining=max(net, 0),
        next_payment_attempt=when
        if preview["collection_method"] == "charge_automatically"
        else None,
    )
    return preview
