"""How stored objects are served: private keys dropped, nested lists and expansions filled in."""

from __future__ import annotations

from typing import Any

from .errors import invalid_param
from .store import JSON, Store, list_object, public


def plan_from_price(price: JSON) -> JSON:
    """The legacy ``plan`` view of a recurring price, still served on subscription items."""
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": dict(price["metadata"]),
        "meter": recurring.get("meter"),
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": recurring.get("usage_type"),
    }


def render_subscription_item(store: Store, item: JSON) -> JSON:
    out: JSON = public(item)
    price = store.get("price", item["_price"])
    out["price"] = public(price)
    out["plan"] = plan_from_price(price)
    subscription = store.lookup("subscription", item["subscription"])
    if subscription is not None:
        out["current_period_start"] = subscription["_period_start"]
        out["current_period_end"] = subscription["_period_end"]
    return out


def render(store: Store, obj: JSON) -> JSON:
    """The JSON Stripe would answer for ``obj`` right now."""
    kind = obj.get("object")
    if kind == "subscription":
        out: JSON = public(obj)
        items = [
            render_subscription_item(store, store.get("subscription_item", i))
            for i in obj["_items"]
        ]
        out["items"] = list_object(items, f"/v1/subscription_items?subscription={obj['id']}")
        return out
    if kind == "subscription_item":
        return render_subscription_item(store, obj)
    if kind == "invoice":
        out = public(obj)
        lines = [public(store.get("line_item", i)) for i in obj["_lines"]]
        out["lines"] = list_object(lines, f"/v1/invoices/{obj['id']}/lines")
        return out
    if kind == "coupon":
        out = public(obj)
        out["valid"] = coupon_valid(store, obj)
        return out
    result: JSON = public(obj)
    return result


def coupon_valid(store: Store, coupon: JSON, at: int | None = None) -> bool:
    """Redeemable at ``at`` (default now): not deleted, before ``redeem_by``, under its cap."""
    when = store.real_now() if at is None else at
    if coupon.get("_deleted"):
        return False
    if coupon["redeem_by"] is not None and when >= int(coupon["redeem_by"]):
        return False
    cap = coupon["max_redemptions"]
    return cap is None or int(coupon["times_redeemed"]) < int(cap)


def _expand_id(store: Store, object_id: str, full: str) -> JSON:
    target = store.find(object_id)
    if target is None:
        raise invalid_param("expand", f"This property cannot be expanded ({full}).")
    return render(store, target)


def _expand_path(store: Store, value: Any, parts: list[str], full: str) -> Any:
    if not parts:
        return value
    if isinstance(value, list):
        return [_expand_path(store, v, parts, full) for v in value]
    if not isinstance(value, dict):
        return value
    head, rest = parts[0], parts[1:]
    if head == "payments" and value.get("object") == "invoice" and value.get("id"):
        payments = [public(x) for x in store.all("invoice_payment") if x["invoice"] == value["id"]]
        payments.reverse()
        value[head] = _expand_path(
            store, list_object(payments, f"/v1/invoice_payments?invoice={value['id']}"), rest, full
        )
        return value
    if head not in value:
        raise invalid_param("expand", f"This property cannot be expanded ({full}).")
    child = value[head]
    if isinstance(child, str):
        child = _expand_id(store, child, full)
    elif isinstance(child, list) and child and all(isinstance(c, str) for c in child):
        child = [_expand_id(store, c, full) for c in child]  # e.g. ``discounts: [di_...]``
    value[head] = _expand_path(store, child, rest, full)
    return value


def expand(store: Store, body: JSON, paths: list[str]) -> JSON:
    """Replace id strings named by ``expand[]`` dotted paths with their objects (up to 4 levels)."""
    for path in paths:
        parts = path.split(".")
        if len(parts) > 4:
            raise invalid_param(
                "expand", f"You cannot expand more than 4 levels of a property ({path})."
            )
        _expand_path(store, body, parts, path)
    return body
