"""Products and prices (per-seat licensed, metered, one-time), lookup keys, legacy plans."""

from __future__ import annotations

from decimal import Decimal

from .errors import invalid_param, invalid_state, resource_missing
from .params import Params
from .render import plan_from_price
from .routing import route
from .search import search
from .store import JSON, Store, paginate, public

_PRODUCT_PARAMS = (
    "name",
    "description",
    "active",
    "metadata",
    "unit_label",
    "url",
    "statement_descriptor",
    "tax_code",
    "images",
    "shippable",
    "default_price",
    "marketing_features",
)


def _apply_product(product: JSON, p: Params) -> None:
    for key in ("name", "description", "unit_label", "url", "statement_descriptor", "tax_code"):
        if p.has(key):
            product[key] = p.str_(key)
    if p.has("active"):
        product["active"] = bool(p.bool_("active"))
    if p.has("images"):
        product["images"] = p.strings("images")
    product["metadata"] = p.metadata(product["metadata"])


def new_product(store: Store, p: Params, product_id: str | None = None) -> JSON:
    """A product from ``name`` and the optional fields; announces ``product.created``."""
    name = p.req_str("name")
    now = store.real_now()
    product: JSON = {
        "id": product_id or store.new_id("prod"),
        "object": "product",
        "active": True,
        "created": now,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {},
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": now,
        "url": None,
    }
    _apply_product(product, p)
    store.add("product", product)
    store.emit("product.created", public(product))
    return product


@route("POST", "/v1/products", atomic=True)
def create_product(store: Store, p: Params) -> JSON:
    p.allow(*_PRODUCT_PARAMS, "id", "default_price_data", "type")
    custom_id = p.str_("id")
    if custom_id is not None and store.find(custom_id) is not None:
        raise invalid_state(
            f"Product already exists: {custom_id}", code="resource_already_exists", param="id"
        )
    product = new_product(store, p, custom_id)
    price_data = p.sub("default_price_data")
    if price_data is not None:
        price = new_price(store, price_data, product["id"])
        product["default_price"] = price["id"]
    return public(product)


@route("GET", "/v1/products/search")
def search_products(store: Store, p: Params) -> JSON:
    return search(store, p, "product", public)


@route("GET", "/v1/products/{id}")
def retrieve_product(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("product", id))


@route("POST", "/v1/products/{id}")
def update_product(store: Store, p: Params, id: str) -> JSON:
    p.allow(*_PRODUCT_PARAMS)
    product = store.get("product", id)
    before = public(product)
    _apply_product(product, p)
    if p.has("default_price"):
        default = p.str_("default_price")
        if default is not None:
            price = store.get("price", default, "default_price")
            if price["product"] != id:
                raise invalid_param(
                    "default_price", "The default price must belong to this product."
                )
        product["default_price"] = default
    product["updated"] = store.real_now()
    store.emit("product.updated", public(product), before=before)
    return public(product)


@route("DELETE", "/v1/products/{id}")
def delete_product(store: Store, p: Params, id: str) -> JSON:
    product = store.get("product", id)
    if any(price["product"] == id for price in store.all("price")):
        raise invalid_state(
            "This product cannot be deleted because it has one or more user-created prices.",
        )
    store.remove("product", id)
    store.emit("product.deleted", public(product))
    return {"id": id, "object": "product", "deleted": True}


@route("GET", "/v1/products")
def list_products(store: Store, p: Params) -> JSON:
    active = p.bool_("active")
    ids = set(p.strings("ids"))
    items = [
        public(x)
        for x in store.all("product")
        if (active is None or x["active"] == active) and (not ids or x["id"] in ids)
    ]
    return paginate(items, p, "/v1/products")


def _take_lookup_key(store: Store, key: str, transfer: bool, price_id: str) -> None:
    for other in store.all("price"):
        if other["lookup_key"] == key and other["id"] != price_id:
            if not transfer:
                raise invalid_param(
                    "lookup_key",
                    f"A price ({other['id']}) already uses that lookup key.",
                    code="parameter_invalid",
                )
            store.get("price", other["id"])["lookup_key"] = None


def new_price(
    store: Store, p: Params, product_id: str | None = None, *, price_id: str | None = None
) -> JSON:
    """A per-unit price (recurring licensed/metered, or one-time); amounts stay exact decimals."""
    currency = p.currency()
    if product_id is None:
        product_id = p.str_("product")
        data = p.sub("product_data")
        if product_id is None and data is None:
            raise invalid_param(
                "product",
                "You must specify either `product` or `product_data` when creating a price.",
                code="parameter_missing",
            )
        if product_id is not None:
            store.get("product", product_id, "product")
        else:
            assert data is not None
            product_id = new_product(store, data)["id"]
    scheme = p.str_("billing_scheme", choices=["per_unit", "tiered"]) or "per_unit"
    if scheme != "per_unit":
        raise invalid_param("billing_scheme", "The emulator supports only per_unit prices.")
    unit_amount = p.int_("unit_amount", minimum=0)
    unit_decimal = p.decimal("unit_amount_decimal")
    if unit_amount is None and unit_decimal is None:
        raise invalid_param(
            "unit_amount", "Missing required param: unit_amount.", code="parameter_missing"
        )
    if unit_amount is not None and unit_decimal is not None:
        raise invalid_param(
            "unit_amount_decimal",
            "You may only specify one of `unit_amount` and `unit_amount_decimal`.",
        )
    if unit_decimal is None:
        assert unit_amount is not None
        unit_decimal = Decimal(unit_amount)
    elif unit_decimal == unit_decimal.to_integral_value():
        unit_amount = int(unit_decimal)
    recurring_params = p.sub("recurring")
    recurring: JSON | None = None
    if recurring_params is not None:
        interval = recurring_params.req_str("interval", choices=["day", "week", "month", "year"])
        usage_type = (
            recurring_params.str_("usage_type", choices=["licensed", "metered"]) or "licensed"
        )
        meter = recurring_params.str_("meter")
        if usage_type == "metered":
            if meter is None:
                raise invalid_param(
                    "recurring[meter]",
                    "A metered price must be backed by a billing meter (recurring[meter]).",
                    code="parameter_missing",
                )
            store.get("billing.meter", meter, "recurring[meter]")
        elif meter is not None:
            raise invalid_param("recurring[meter]", "Only metered prices can have a meter.")
        recurring = {
            "interval": interval,
            "interval_count": recurring_params.int_("interval_count", minimum=1) or 1,
            "meter": meter,
            "trial_period_days": recurring_params.int_("trial_period_days"),
            "usage_type": usage_type,
        }
    price_id = price_id or store.new_id("price")
    lookup_key = p.str_("lookup_key")
    if lookup_key is not None:
        _take_lookup_key(store, lookup_key, bool(p.bool_("transfer_lookup_key")), price_id)
    price: JSON = {
        "id": price_id,
        "object": "price",
        "active": p.bool_("active") if p.has("active") else True,
        "billing_scheme": "per_unit",
        "created": store.real_now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": p.metadata(),
        "nickname": p.str_("nickname"),
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": p.str_("tax_behavior", choices=["inclusive", "exclusive", "unspecified"])
        or "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_decimal),
    }
    store.add("price", price)
    store.emit("price.created", public(price))
    return price


_PRICE_PARAMS = (
    "currency",
    "product",
    "product_data",
    "unit_amount",
    "unit_amount_decimal",
    "recurring",
    "lookup_key",
    "transfer_lookup_key",
    "nickname",
    "metadata",
    "active",
    "billing_scheme",
    "tax_behavior",
)


@route("POST", "/v1/prices", atomic=True)
def create_price(store: Store, p: Params) -> JSON:
    p.allow(*_PRICE_PARAMS)
    return public(new_price(store, p))


@route("GET", "/v1/prices/search")
def search_prices(store: Store, p: Params) -> JSON:
    return search(store, p, "price", public)


@route("GET", "/v1/prices/{id}")
def retrieve_price(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("price", id))


@route("POST", "/v1/prices/{id}")
def update_price(store: Store, p: Params, id: str) -> JSON:
    p.allow("active", "metadata", "nickname", "lookup_key", "transfer_lookup_key", "tax_behavior")
    price = store.get("price", id)
    before = public(price)
    if p.has("active"):
        price["active"] = bool(p.bool_("active"))
    if p.has("nickname"):
        price["nickname"] = p.str_("nickname")
    if p.has("lookup_key"):
        key = p.str_("lookup_key")
        if key is not None:
            _take_lookup_key(store, key, bool(p.bool_("transfer_lookup_key")), id)
        price["lookup_key"] = key
    price["metadata"] = p.metadata(price["metadata"])
    store.emit("price.updated", public(price), before=before)
    return public(price)


@route("GET", "/v1/prices")
def list_prices(store: Store, p: Params) -> JSON:
    active = p.bool_("active")
    product = p.str_("product")
    currency = p.str_("currency")
    type_ = p.str_("type")
    keys = set(p.strings("lookup_keys"))
    items = [
        public(x)
        for x in store.all("price")
        if (active is None or x["active"] == active)
        and product in (None, x["product"])
        and currency in (None, x["currency"])
        and type_ in (None, x["type"])
        and (not keys or x["lookup_key"] in keys)
    ]
    return paginate(items, p, "/v1/prices")


# --- legacy plans: a plan is a recurring price served in the plan shape -----------------------


@route("POST", "/v1/plans", atomic=True)
def create_plan(store: Store, p: Params) -> JSON:
    p.allow(
        "id",
        "amount",
        "amount_decimal",
        "currency",
        "interval",
        "interval_count",
        "product",
        "nickname",
        "usage_type",
        "meter",
        "metadata",
        "active",
        "billing_scheme",
        "trial_period_days",
    )
    plan_id = p.str_("id")
    if plan_id is not None and store.find(plan_id) is not None:
        raise invalid_state(
            f"Plan already exists: {plan_id}", code="resource_already_exists", param="id"
        )
    product = p.raw("product")
    if product is None:
        raise invalid_param("product", "Missing required param: product.", code="parameter_missing")
    price_params: dict[str, object] = {
        "currency": p.req_str("currency"),
        "recurring": {
            "interval": p.req_str("interval"),
            "interval_count": p.raw("interval_count") or "1",
            "usage_type": p.raw("usage_type") or "licensed",
            **({"meter": p.raw("meter")} if p.has("meter") else {}),
        },
        "metadata": p.raw("metadata") or {},
    }
    if p.has("amount_decimal"):
        price_params["unit_amount_decimal"] = p.raw("amount_decimal")
    else:
        price_params["unit_amount"] = str(p.req_int("amount", minimum=0))
    if isinstance(product, dict):
        price_params["product_data"] = product
    else:
        price_params["product"] = product
    for key in ("nickname", "active", "billing_scheme"):
        if p.has(key):
            price_params[key] = p.raw(key)
    price = new_price(store, Params(price_params), None, price_id=plan_id)
    store.emit("plan.created", plan_from_price(price))
    return plan_from_price(price)


@route("GET", "/v1/plans/{id}")
def retrieve_plan(store: Store, p: Params, id: str) -> JSON:
    return plan_from_price(_plan(store, id))


def _plan(store: Store, plan_id: str) -> JSON:
    price = store.get("price", plan_id)
    if price["recurring"] is None:
        raise resource_missing("plan", plan_id)
    return price


@route("POST", "/v1/plans/{id}")
def update_plan(store: Store, p: Params, id: str) -> JSON:
    p.allow("active", "metadata", "nickname")
    price = _plan(store, id)
    if p.has("active"):
        price["active"] = bool(p.bool_("active"))
    if p.has("nickname"):
        price["nickname"] = p.str_("nickname")
    price["metadata"] = p.metadata(price["metadata"])
    return plan_from_price(price)


@route("DELETE", "/v1/plans/{id}")
def delete_plan(store: Store, p: Params, id: str) -> JSON:
    price = _plan(store, id)
    price["active"] = False
    return {"id": id, "object": "plan", "deleted": True}


@route("GET", "/v1/plans")
def list_plans(store: Store, p: Params) -> JSON:
    product = p.str_("product")
    active = p.bool_("active")
    items = [
        plan_from_price(x)
        for x in store.all("price")
        if x["recurring"] is not None
        and product in (None, x["product"])
        and (active is None or x["active"] == active)
    ]
    return paginate(items, p, "/v1/plans")
