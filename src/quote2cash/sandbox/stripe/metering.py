"""Billing meters, meter events (deduplicated by ``identifier``) and test clocks."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from .billing_engine import advance_clock
from .errors import StripeApiError, invalid_param, invalid_state
from .params import Params
from .routing import route
from .store import JSON, Store, paginate, public

IDENTIFIER_WINDOW = 24 * 3600
"""Stripe deduplicates a meter event ``identifier`` within a rolling 24 hours (real time), not
forever: a repeat after that is counted again."""


@route("POST", "/v1/billing/meters")
def create_meter(store: Store, p: Params) -> JSON:
    p.allow(
        "display_name",
        "event_name",
        "default_aggregation",
        "customer_mapping",
        "value_settings",
        "event_time_window",
    )
    event_name = p.req_str("event_name")
    if any(
        m["event_name"] == event_name and m["status"] == "active"
        for m in store.all("billing.meter")
    ):
        raise invalid_param(
            "event_name", f"An active meter with event_name `{event_name}` already exists."
        )
    aggregation = p.sub("default_aggregation", required=True)
    assert aggregation is not None
    formula = aggregation.req_str("formula", choices=["sum", "count", "last"])
    mapping = p.sub("customer_mapping")
    values = p.sub("value_settings")
    now = store.real_now()
    meter: JSON = {
        "id": store.new_id("mtr"),
        "object": "billing.meter",
        "created": now,
        "customer_mapping": {
            "event_payload_key": (mapping.str_("event_payload_key") if mapping else None)
            or "stripe_customer_id",
            "type": "by_id",
        },
        "default_aggregation": {"formula": formula},
        "display_name": p.req_str("display_name"),
        "event_name": event_name,
        "event_time_window": p.str_("event_time_window", choices=["day", "hour"]),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {
            "event_payload_key": (values.str_("event_payload_key") if values else None) or "value"
        },
    }
    store.add("billing.meter", meter)
    store.emit("billing.meter.created", public(meter))
    return public(meter)


@route("GET", "/v1/billing/meters/{id}")
def retrieve_meter(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("billing.meter", id))


@route("POST", "/v1/billing/meters/{id}")
def update_meter(store: Store, p: Params, id: str) -> JSON:
    p.allow("display_name")
    meter = store.get("billing.meter", id)
    if p.has("display_name"):
        meter["display_name"] = p.req_str("display_name")
        meter["updated"] = store.real_now()
    return public(meter)


@route("POST", "/v1/billing/meters/{id}/deactivate")
def deactivate_meter(store: Store, p: Params, id: str) -> JSON:
    meter = store.get("billing.meter", id)
    now = store.real_now()
    meter["status"] = "inactive"
    meter["status_transitions"]["deactivated_at"] = now
    meter["updated"] = now
    return public(meter)


@route("POST", "/v1/billing/meters/{id}/reactivate")
def reactivate_meter(store: Store, p: Params, id: str) -> JSON:
    meter = store.get("billing.meter", id)
    meter["status"] = "active"
    meter["status_transitions"]["deactivated_at"] = None
    meter["updated"] = store.real_now()
    return public(meter)


@route("GET", "/v1/billing/meters")
def list_meters(store: Store, p: Params) -> JSON:
    status = p.str_("status", choices=["active", "inactive"])
    return paginate(
        [public(m) for m in store.all("billing.meter") if status in (None, m["status"])],
        p,
        "/v1/billing/meters",
    )


@route("POST", "/v1/billing/meter_events")
def create_meter_event(store: Store, p: Params) -> JSON:
    """Record usage; an ``identifier`` repeated within 24 hours is rejected with 400
    (``duplicate_meter_event``) and not counted twice; after that it is a new event."""
    p.allow("event_name", "payload", "identifier", "timestamp")
    event_name = p.req_str("event_name")
    payload_params = p.sub("payload", required=True)
    assert payload_params is not None
    meter = next(
        (
            m
            for m in store.all("billing.meter")
            if m["event_name"] == event_name and m["status"] == "active"
        ),
        None,
    )
    if meter is None:
        raise invalid_param(
            "event_name", f"No active meter was found for event_name `{event_name}`."
        )
    payload = {str(k): str(v) for k, v in payload_params.data.items()}
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    customer_id = payload.get(customer_key)
    if not customer_id:
        raise invalid_param(
            f"payload[{customer_key}]",
            f"Missing required payload key `{customer_key}`.",
            code="parameter_missing",
        )
    customer = store.get("customer", customer_id, f"payload[{customer_key}]")
    value = payload.get(
        value_key, "1" if meter["default_aggregation"]["formula"] == "count" else None
    )
    if value is None or not re.fullmatch(r"-?\d+(\.\d+)?", value):
        raise invalid_param(
            f"payload[{value_key}]", f"payload[{value_key}] must be a number, got {value!r}."
        )
    identifier = p.str_("identifier") or store.new_id("mev")
    if len(identifier) > 100:
        raise invalid_param(
            "identifier", f"Invalid string: {identifier[:20]}...; must be at most 100 characters"
        )
    earlier = store.meter_event_ids.get((event_name, identifier))
    received = store.real_now()
    if earlier is not None and received - earlier["_received"] < IDENTIFIER_WINDOW:
        raise StripeApiError(
            400,
            "invalid_request_error",
            f"An event already exists with identifier {identifier}.",
            code="duplicate_meter_event",
            param="identifier",
            headers={"Stripe-Should-Retry": "false"},
        )
    now = store.now_for_clock(customer["test_clock"])
    event: JSON = {
        "id": store.new_id("mev"),
        "object": "billing.meter_event",
        "created": now,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": payload,
        "timestamp": p.int_("timestamp") or now,
        "_received": received,
    }
    store.add("billing.meter_event", event)
    store.remember_meter_event((event_name, identifier), event)
    return {k: v for k, v in public(event).items() if k != "id"}


@route("POST", "/v1/billing/meter_event_adjustments", atomic=True)
def create_meter_event_adjustment(store: Store, p: Params) -> JSON:
    """Cancel a meter event by identifier: it no longer counts in any aggregation."""
    p.allow("event_name", "type", "cancel")
    event_name = p.req_str("event_name")
    p.req_str("type", choices=["cancel"])
    cancel = p.sub("cancel", required=True)
    assert cancel is not None
    identifier = cancel.req_str("identifier")
    original = store.meter_event_ids.get((event_name, identifier))
    if original is None:
        raise invalid_param(
            "cancel[identifier]",
            f"No meter event with identifier {identifier} for event_name `{event_name}`.",
            code="resource_missing",
        )
    event = store.get("billing.meter_event", original["id"])
    if event.get("_canceled"):
        raise invalid_state(
            f"The meter event {identifier} is already canceled.", param="cancel[identifier]"
        )
    event["_canceled"] = True
    return {
        "object": "billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "event_name": event_name,
        "livemode": False,
        "status": "complete",
        "type": "cancel",
    }


@route("GET", "/v1/billing/meters/{id}/event_summaries")
def meter_event_summaries(store: Store, p: Params, id: str) -> JSON:
    """One summary over ``[start_time, end_time)`` (both on whole minutes, as Stripe requires);
    a usage quantity (JSON number), not money."""
    meter = store.get("billing.meter", id)
    customer = p.req_str("customer")
    start = p.req_int("start_time")
    end = p.req_int("end_time")
    for name, value in (("start_time", start), ("end_time", end)):
        if value % 60:
            raise invalid_param(name, f"{name} must be aligned with minute boundaries.")
    key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    values = [
        Fraction(Decimal(e["payload"].get(value_key, "0")))
        for e in store.all("billing.meter_event")
        if e["event_name"] == meter["event_name"]
        and not e.get("_canceled")
        and e["payload"].get(key) == customer
        and start <= e["timestamp"] < end
    ]
    formula = meter["default_aggregation"]["formula"]
    total = (
        Fraction(len(values))
        if formula == "count"
        else (values[-1] if formula == "last" and values else sum(values, Fraction(0)))
    )
    summary: JSON = {
        "id": store.new_id("mtrusg"),
        "object": "billing.meter_event_summary",
        "aggregated_value": int(total) if total.denominator == 1 else float(total),
        "end_time": end,
        "livemode": False,
        "meter": id,
        "start_time": start,
    }
    return {
        "object": "list",
        "data": [summary],
        "has_more": False,
        "url": f"/v1/billing/meters/{id}/event_summaries",
    }


# --- test clocks -----------------------------------------------------------------------------


@route("POST", "/v1/test_helpers/test_clocks")
def create_clock(store: Store, p: Params) -> JSON:
    p.allow("frozen_time", "name")
    frozen = p.req_int("frozen_time")
    clock: JSON = {
        "id": store.new_id("clock"),
        "object": "test_helpers.test_clock",
        "created": store.real_now(),
        "deletes_after": store.real_now() + 30 * 86400,
        "frozen_time": frozen,
        "livemode": False,
        "name": p.str_("name"),
        "status": "ready",
        "status_details": {},
    }
    store.add("test_helpers.test_clock", clock)
    store.emit("test_helpers.test_clock.created", public(clock))
    return public(clock)


@route("GET", "/v1/test_helpers/test_clocks/{id}")
def retrieve_clock(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("test_helpers.test_clock", id))


@route("GET", "/v1/test_helpers/test_clocks")
def list_clocks(store: Store, p: Params) -> JSON:
    return paginate(
        [public(c) for c in store.all("test_helpers.test_clock")], p, "/v1/test_helpers/test_clocks"
    )


@route("DELETE", "/v1/test_helpers/test_clocks/{id}")
def delete_clock(store: Store, p: Params, id: str) -> JSON:
    store.get("test_helpers.test_clock", id)
    for customer in store.all("customer"):
        if customer["test_clock"] == id:
            store.remove("customer", customer["id"])
    store.remove("test_helpers.test_clock", id)
    return {"id": id, "object": "test_helpers.test_clock", "deleted": True}


@route("POST", "/v1/test_helpers/test_clocks/{id}/advance", atomic=True)
def advance(store: Store, p: Params, id: str) -> JSON:
    """Advance synchronously: the answer already has status ``ready`` and all renewals done."""
    p.allow("frozen_time")
    clock = store.get("test_helpers.test_clock", id)
    target = p.req_int("frozen_time")
    if target <= clock["frozen_time"]:
        raise invalid_param(
            "frozen_time",
            "The frozen_time must be later than the test clock's current frozen_time.",
        )
    if clock["status"] != "ready":
        raise invalid_state("The test clock is not ready to be advanced.")
    clock["status"] = "advancing"
    store.emit("test_helpers.test_clock.advancing", public(clock))
    advance_clock(store, clock, target)
    clock["status"] = "ready"
    store.emit("test_helpers.test_clock.ready", public(clock), created=target)
    return public(clock)
