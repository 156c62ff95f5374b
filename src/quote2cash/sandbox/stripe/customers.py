"""Customers: CRUD, metadata, default payment method, and Stripe's search query language subset."""

from __future__ import annotations

import re
import secrets
import string

from .errors import invalid_param
from .params import Params
from .payments import attach_payment_method, resolve_payment_method
from .routing import route
from .search import search
from .store import JSON, Store, paginate, public
from .subscriptions import cancel_subscription_now

_CUSTOMER_PARAMS = (
    "name",
    "email",
    "phone",
    "description",
    "metadata",
    "address",
    "shipping",
    "payment_method",
    "invoice_settings",
    "preferred_locales",
    "tax_exempt",
    "balance",
    "invoice_prefix",
)
_ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")


def _address(p: Params, key: str) -> JSON | None:
    sub = p.sub(key)
    if sub is None:
        return None
    return {k: sub.str_(k) for k in _ADDRESS_KEYS}


def _apply(store: Store, customer: JSON, p: Params) -> list[JSON]:
    """Apply the parameters; returns newly attached payment methods (the caller announces them)."""
    for key in ("name", "email", "phone", "description"):
        if p.has(key):
            customer[key] = p.str_(key)
    if p.has("address"):
        customer["address"] = _address(p, "address")
    if p.has("shipping"):
        shipping = p.sub("shipping")
        customer["shipping"] = (
            None
            if shipping is None
            else {
                "address": _address(shipping, "address"),
                "name": shipping.str_("name"),
                "phone": shipping.str_("phone"),
            }
        )
    if p.has("preferred_locales"):
        customer["preferred_locales"] = p.strings("preferred_locales")
    if p.has("tax_exempt"):
        customer["tax_exempt"] = (
            p.str_("tax_exempt", choices=["none", "exempt", "reverse"]) or "none"
        )
    balance = p.int_("balance")
    if balance is not None:
        customer["balance"] = balance
    customer["metadata"] = p.metadata(customer["metadata"])
    magic_to_real: dict[str, str] = {}
    attached: list[JSON] = []
    pm_id = p.str_("payment_method")
    if pm_id is not None:
        pm = resolve_payment_method(store, pm_id)
        if pm["customer"] != customer["id"]:
            attached.append(attach_payment_method(store, pm, customer["id"], announce=False))
        magic_to_real[pm_id] = pm["id"]
    settings = p.sub("invoice_settings")
    if settings is not None and settings.has("default_payment_method"):
        default = settings.str_("default_payment_method")
        if default is not None:
            default = magic_to_real.get(default, default)
            pm = store.get("payment_method", default, "invoice_settings[default_payment_method]")
            if pm["customer"] != customer["id"]:
                raise invalid_param(
                    "invoice_settings[default_payment_method]",
                    f"The customer does not have a payment method with the ID {default}. "
                    "The payment method must be attached to the customer.",
                    code="resource_missing",
                )
        customer["invoice_settings"]["default_payment_method"] = default
    return attached


def _announce(store: Store, attached: list[JSON]) -> None:
    for pm in attached:
        store.emit("payment_method.attached", public(pm))


@route("POST", "/v1/customers", atomic=True)
def create_customer(store: Store, p: Params) -> JSON:
    p.allow(*_CUSTOMER_PARAMS, "test_clock")
    clock = p.str_("test_clock")
    if clock is not None:
        store.get("test_helpers.test_clock", clock, "test_clock")
    email = p.str_("email")
    if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise invalid_param("email", f"Invalid email address: {email}", code="email_invalid")
    customer: JSON = {
        "id": store.new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": store.now_for_clock(clock),
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": p.str_("invoice_prefix")
        or "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": clock,
    }
    store.add("customer", customer)
    attached = _apply(store, customer, p)
    store.emit("customer.created", public(customer))
    _announce(store, attached)
    return public(customer)


@route("GET", "/v1/customers/search")
def search_customers(store: Store, p: Params) -> JSON:
    return search(store, p, "customer", public)


@route("GET", "/v1/customers/{id}")
def retrieve_customer(store: Store, p: Params, id: str) -> JSON:
    customer = store.lookup("customer", id)
    if customer is None and store.lookup("deleted_customer", id) is not None:
        return {"id": id, "object": "customer", "deleted": True}
    return public(store.get("customer", id))


@route("POST", "/v1/customers/{id}", atomic=True)
def update_customer(store: Store, p: Params, id: str) -> JSON:
    p.allow(*_CUSTOMER_PARAMS)
    customer = store.get("customer", id)
    before = public(customer)
    attached = _apply(store, customer, p)
    _announce(store, attached)
    after = public(customer)
    store.emit("customer.updated", after, before=before)
    return after


@route("DELETE", "/v1/customers/{id}", atomic=True)
def delete_customer(store: Store, p: Params, id: str) -> JSON:
    customer = store.get("customer", id)
    for sub in store.all("subscription"):
        if sub["customer"] == id and sub["status"] not in ("canceled", "incomplete_expired"):
            cancel_subscription_now(
                store, store.get("subscription", sub["id"]), prorate=False, invoice_now=False
            )
    store.remove("customer", id)
    store.add("deleted_customer", {"id": id})
    store.emit("customer.deleted", public(customer))
    return {"id": id, "object": "customer", "deleted": True}


@route("GET", "/v1/customers")
def list_customers(store: Store, p: Params) -> JSON:
    email = p.str_("email")
    clock = p.str_("test_clock")
    items = [
        public(c)
        for c in store.all("customer")
        if (email is None or c["email"] == email) and (clock is None or c["test_clock"] == clock)
    ]
    return paginate(items, p, "/v1/customers")
