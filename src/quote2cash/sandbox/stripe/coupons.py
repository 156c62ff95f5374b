"""Coupons (create / retrieve / update / delete / list) and the discounts redeemed from them.

A coupon takes ``percent_off`` (0 < p <= 100, at most two decimals) or ``amount_off`` +
``currency``, for ``duration`` once | repeating (``duration_in_months``) | forever. Redeeming it on
a subscription (``discounts[j][coupon]``) or a subscription item
(``items[i][discounts][j][coupon]``) creates a ``discount`` (``di_...``), counted in the coupon's
``times_redeemed``. Discounts are not an API resource of their own: they are seen through
``expand[]=discounts`` (or ``...discount_amounts.discount``). How they reduce invoices is in
``billing_engine``.

A deleted coupon answers 404 but keeps working for the discounts already made from it, as in
Stripe; its id may be used again for a new coupon.
"""

from __future__ import annotations

import secrets
import string
from decimal import Decimal

from .billing_engine import add_interval
from .errors import StripeApiError, invalid_param, missing_param, resource_missing
from .params import Params
from .render import coupon_valid, render
from .routing import route
from .store import JSON, Store, paginate

_ID_ALPHABET = string.ascii_uppercase + string.digits
_DURATIONS = ["once", "repeating", "forever"]


def _new_coupon_id(store: Store) -> str:
    while True:
        candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
        if candidate not in store.kinds_by_id:
            return candidate


def _percent_off(p: Params) -> Decimal | None:
    value = p.decimal("percent_off")
    if value is None:
        return None
    if not value.is_finite() or not Decimal(0) < value <= Decimal(100):
        raise invalid_param(
            "percent_off",
            "percent_off must be a number greater than 0 and less than or equal to 100.",
        )
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise invalid_param("percent_off", "percent_off can have at most 2 decimal places.")
    return value


def _live_coupon(store: Store, coupon_id: str, param: str = "id") -> JSON:
    coupon = store.lookup("coupon", coupon_id)
    if coupon is None or coupon.get("_deleted"):
        raise resource_missing("coupon", coupon_id, param)
    return coupon


@route("POST", "/v1/coupons", atomic=True)
def create_coupon(store: Store, p: Params) -> JSON:
    p.allow(
        "id",
        "percent_off",
        "amount_off",
        "currency",
        "duration",
        "duration_in_months",
        "name",
        "metadata",
        "max_redemptions",
        "redeem_by",
    )
    percent = _percent_off(p)
    amount_off = p.int_("amount_off", minimum=1)
    if percent is not None and amount_off is not None:
        raise invalid_param(
            "amount_off", "You may only specify one of these parameters: amount_off, percent_off."
        )
    if percent is None and amount_off is None:
        raise invalid_param(
            "percent_off",
            "Missing required param: percent_off or amount_off.",
            code="parameter_missing",
        )
    currency = p.currency() if amount_off is not None else None
    if amount_off is None and p.has("currency"):
        raise invalid_param("currency", "currency can only be set together with amount_off.")
    duration = p.str_("duration", choices=_DURATIONS) or "once"
    months = p.int_("duration_in_months", minimum=1)
    if duration == "repeating" and months is None:
        raise missing_param("duration_in_months")
    if duration != "repeating" and months is not None:
        raise invalid_param(
            "duration_in_months",
            "duration_in_months can only be set when duration is 'repeating'.",
        )
    name = p.str_("name")
    if name is not None and len(name) > 40:
        raise invalid_param("name", "name must be at most 40 characters.")
    max_redemptions = p.int_("max_redemptions", minimum=1)
    redeem_by = p.int_("redeem_by", minimum=1)
    coupon_id = p.str_("id")
    if coupon_id is not None and ("/" in coupon_id or len(coupon_id) > 200):
        raise invalid_param("id", "A coupon id is at most 200 characters and has no '/'.")
    if coupon_id is not None:
        existing = store.find(coupon_id)
        if existing is not None and existing.get("object") == "coupon" and existing.get("_deleted"):
            store.remove("coupon", coupon_id)
        elif existing is not None:
            raise StripeApiError(
                400,
                "invalid_request_error",
                "Coupon already exists.",
                code="resource_already_exists",
                param="id",
            )
    coupon: JSON = {
        "id": coupon_id or _new_coupon_id(store),
        "object": "coupon",
        "amount_off": amount_off,
        "created": store.real_now(),
        "currency": currency,
        "duration": duration,
        "duration_in_months": months,
        "livemode": False,
        "max_redemptions": max_redemptions,
        "metadata": p.metadata(),
        "name": name,
        "percent_off": float(percent) if percent is not None else None,
        "redeem_by": redeem_by,
        "times_redeemed": 0,
        "valid": True,
        "_percent_off": str(percent) if percent is not None else None,
    }
    store.add("coupon", coupon)
    store.emit("coupon.created", render(store, coupon))
    return render(store, coupon)


@route("GET", "/v1/coupons/{id}")
def retrieve_coupon(store: Store, p: Params, id: str) -> JSON:
    return render(store, _live_coupon(store, id))


@route("POST", "/v1/coupons/{id}", atomic=True)
def update_coupon(store: Store, p: Params, id: str) -> JSON:
    p.allow("name", "metadata")
    coupon = _live_coupon(store, id)
    before = render(store, coupon)
    if p.has("name"):
        name = p.str_("name")
        if name is not None and len(name) > 40:
            raise invalid_param("name", "name must be at most 40 characters.")
        coupon["name"] = name
    coupon["metadata"] = p.metadata(coupon["metadata"])
    after = render(store, coupon)
    store.emit("coupon.updated", after, before=before)
    return after


@route("DELETE", "/v1/coupons/{id}", atomic=True)
def delete_coupon(store: Store, p: Params, id: str) -> JSON:
    coupon = _live_coupon(store, id)
    coupon["_deleted"] = True
    coupon["valid"] = False
    store.emit("coupon.deleted", render(store, coupon))
    return {"id": id, "object": "coupon", "deleted": True}


@route("GET", "/v1/coupons")
def list_coupons(store: Store, p: Params) -> JSON:
    coupons = [render(store, c) for c in store.all("coupon") if not c.get("_deleted")]
    return paginate(coupons, p, "/v1/coupons")


# --- discounts -------------------------------------------------------------------------------


def _new_discount(
    store: Store, coupon: JSON, *, sub: JSON, item: JSON | None, start: int, param: str
) -> JSON:
    if not coupon_valid(store, coupon, start):
        raise invalid_param(
            param,
            f"Coupon expired: {coupon['id']} is no longer redeemable (past redeem_by or "
            "max_redemptions reached).",
            code="coupon_expired",
        )
    coupon["times_redeemed"] += 1
    months = coupon["duration_in_months"]
    discount: JSON = {
        "id": store.new_id("di"),
        "object": "discount",
        "checkout_session": None,
        "customer": sub["customer"],
        "customer_account": None,
        "end": add_interval(start, int(months), "month", 1)
        if coupon["duration"] == "repeating"
        else None,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "source": {"coupon": coupon["id"], "type": "coupon"},
        "start": start,
        "subscription": sub["id"],
        "subscription_item": item["id"] if item is not None else None,
        # What the billing engine needs, kept even if the coupon is deleted later.
        "_coupon": {
            "amount_off": coupon["amount_off"],
            "currency": coupon["currency"],
            "duration": coupon["duration"],
            "percent_off": coupon["_percent_off"],
        },
        "_first_invoice": None,
    }
    return store.add("discount", discount)


def resolve_discounts(
    store: Store, p: Params, key: str, *, sub: JSON, item: JSON | None, current: list[str]
) -> list[str]:
    """The discount ids that ``p[key]`` (``discounts[j][coupon|discount]``) asks for.

    New coupons become new discounts; ``[discount]`` keeps an existing one of this item or its
    subscription; ``""`` clears the list. Promotion codes are refused.
    """
    start = store.now_for_customer(sub["customer"])
    reusable = set(current) | set(sub["discounts"])
    out: list[str] = []
    coupons_seen: set[str] = set()
    for entry in p.items(key):
        entry.allow("coupon", "discount", "promotion_code")
        given = [k for k in ("coupon", "discount", "promotion_code") if entry.str_(k) is not None]
        if len(given) != 1:
            raise invalid_param(
                entry.prefix,
                "Each discount takes exactly one of coupon, discount or promotion_code.",
            )
        if given[0] == "promotion_code":
            raise invalid_param(
                f"{entry.prefix}[promotion_code]",
                "The emulator does not support promotion codes; pass a coupon instead.",
            )
        if given[0] == "discount":
            discount_id = entry.req_str("discount")
            if discount_id not in reusable or store.lookup("discount", discount_id) is None:
                raise invalid_param(
                    f"{entry.prefix}[discount]",
                    f"No such discount: '{discount_id}' on this subscription.",
                    code="resource_missing",
                )
            if discount_id in out:
                raise invalid_param(f"{entry.prefix}[discount]", "A discount is listed twice.")
            out.append(discount_id)
            continue
        coupon_id = entry.req_str("coupon")
        param = f"{entry.prefix}[coupon]"
        coupon = store.lookup("coupon", coupon_id)
        if coupon is None or coupon.get("_deleted"):
            raise invalid_param(param, f"No such coupon: '{coupon_id}'", code="resource_missing")
        if coupon_id in coupons_seen:
            raise invalid_param(param, f"The coupon {coupon_id} is applied more than once.")
        coupons_seen.add(coupon_id)
        out.append(_new_discount(store, coupon, sub=sub, item=item, start=start, param=param)["id"])
    return out
