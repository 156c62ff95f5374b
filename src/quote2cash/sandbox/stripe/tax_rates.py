"""Tax rates (create / retrieve / update / list) and how they are attached to other objects.

A rate is attached as a snapshot of the object at that time (subscription ``default_tax_rates``,
subscription item and invoice item ``tax_rates``, invoice ``default_tax_rates``): its percentage
and inclusiveness never change in Stripe, so the snapshot taxes exactly as the rate does
(``taxation``); only ``active`` and the descriptive fields may be updated, and an inactive rate
cannot be attached to anything new.
"""

from __future__ import annotations

from decimal import Decimal

from .errors import invalid_param, resource_missing
from .params import Params
from .render import render
from .routing import route
from .store import JSON, Store, paginate

_MUTABLE = (
    "active",
    "country",
    "description",
    "display_name",
    "jurisdiction",
    "metadata",
    "state",
    "tax_type",
)
_TAX_TYPES = [
    "amusement_tax",
    "communications_tax",
    "gst",
    "hst",
    "igst",
    "jct",
    "lease_tax",
    "pst",
    "qst",
    "retail_delivery_fee",
    "rst",
    "sales_tax",
    "service_tax",
    "vat",
]


def _number(value: Decimal) -> int | float:
    """A percentage as Stripe writes it: ``19`` when whole, ``7.25`` otherwise."""
    return int(value) if value == value.to_integral_value() else float(value)


def _percentage(p: Params) -> Decimal:
    value = p.decimal("percentage")
    if value is None:
        raise invalid_param(
            "percentage", "Missing required param: percentage.", code="parameter_missing"
        )
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
        raise invalid_param("percentage", "percentage must be between 0 and 100.")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise invalid_param("percentage", "percentage can have at most 4 decimal places.")
    return value


def _set_mutable(rate: JSON, p: Params) -> None:
    for key in ("country", "description", "jurisdiction", "state"):
        if p.has(key):
            rate[key] = p.str_(key)
    if p.has("display_name"):
        name = p.req_str("display_name")
        if len(name) > 50:
            raise invalid_param("display_name", "display_name must be at most 50 characters.")
        rate["display_name"] = name
    if p.has("tax_type"):
        rate["tax_type"] = p.str_("tax_type", choices=_TAX_TYPES)
    if p.has("active"):
        active = p.bool_("active")
        rate["active"] = True if active is None else active
    rate["metadata"] = p.metadata(rate["metadata"])


@route("POST", "/v1/tax_rates", atomic=True)
def create_tax_rate(store: Store, p: Params) -> JSON:
    p.allow("percentage", "inclusive", *_MUTABLE)
    percentage = _percentage(p)
    inclusive = p.bool_("inclusive")
    if inclusive is None:
        raise invalid_param(
            "inclusive", "Missing required param: inclusive.", code="parameter_missing"
        )
    p.req_str("display_name")
    rate: JSON = {
        "id": store.new_id("txr"),
        "object": "tax_rate",
        "active": True,
        "country": None,
        "created": store.real_now(),
        "description": None,
        "display_name": "",
        "effective_percentage": _number(percentage),
        "flat_amount": None,
        "inclusive": inclusive,
        "jurisdiction": None,
        "jurisdiction_level": None,
        "livemode": False,
        "metadata": {},
        "percentage": _number(percentage),
        "rate_type": "percentage",
        "state": None,
        "tax_type": None,
        "_percentage": str(percentage),
    }
    _set_mutable(rate, p)
    store.add("tax_rate", rate)
    store.emit("tax_rate.created", render(store, rate))
    return render(store, rate)


@route("GET", "/v1/tax_rates/{id}")
def retrieve_tax_rate(store: Store, p: Params, id: str) -> JSON:
    return render(store, store.get("tax_rate", id))


@route("POST", "/v1/tax_rates/{id}", atomic=True)
def update_tax_rate(store: Store, p: Params, id: str) -> JSON:
    p.allow(*_MUTABLE)
    rate = store.get("tax_rate", id)
    before = render(store, rate)
    _set_mutable(rate, p)
    after = render(store, rate)
    store.emit("tax_rate.updated", after, before=before)
    return after


@route("GET", "/v1/tax_rates")
def list_tax_rates(store: Store, p: Params) -> JSON:
    active = p.bool_("active")
    inclusive = p.bool_("inclusive")
    rates = [
        render(store, r)
        for r in store.all("tax_rate")
        if active in (None, r["active"]) and inclusive in (None, r["inclusive"])
    ]
    return paginate(rates, p, "/v1/tax_rates")


# --- applying rates --------------------------------------------------------------------------


def tax_rate_snapshots(store: Store, p: Params, key: str) -> list[JSON] | None:
    """The tax rates ``p[key]`` names (None if absent; ``""`` clears); inactive ones refused."""
    if not p.has(key):
        return None
    out: list[JSON] = []
    for index, rate_id in enumerate(p.strings(key)):
        rate = store.lookup("tax_rate", rate_id)
        param = f"{p._name(key)}[{index}]"
        if rate is None:
            raise resource_missing("tax_rate", rate_id, param)
        if not rate["active"]:
            raise invalid_param(
                param, f"Tax rate {rate_id} is inactive and cannot be applied to new objects."
            )
        if any(r["id"] == rate_id for r in out):
            raise invalid_param(param, f"Tax rate {rate_id} is listed more than once.")
        out.append(render(store, rate) | {"_percentage": rate["_percentage"]})
    return out
