"""The emulator's in-memory state: objects by id, Stripe-style ids, pagination and the event log.

All access happens on the emulator's own event loop, one request at a time, so no locking is needed.
"""

from __future__ import annotations

import copy
import secrets
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import invalid_param, resource_missing
from .params import Params

JSON = dict[str, Any]
API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits

KIND_NAMES = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "subscription": "subscription",
    "subscription_item": "subscription item",
    "invoice": "invoice",
    "invoiceitem": "invoiceitem",
    "line_item": "line item",
    "credit_note": "credit note",
    "payment_method": "PaymentMethod",
    "payment_intent": "payment_intent",
    "charge": "charge",
    "refund": "refund",
    "billing.meter": "billing meter",
    "billing.meter_event": "meter event",
    "test_helpers.test_clock": "test clock",
    "event": "event",
    "webhook_endpoint": "webhook endpoint",
    "coupon": "coupon",
    "discount": "discount",
}


@dataclass
class RequestInfo:
    """Who is asking: recorded on events (``request.id``, ``request.idempotency_key``)."""

    request_id: str
    idempotency_key: str | None = None


@dataclass
class Store:
    """Every object the emulator holds, keyed by kind then id, in creation order."""

    objects: dict[str, dict[str, JSON]] = field(default_factory=dict)
    kinds_by_id: dict[str, str] = field(default_factory=dict)
    new_events: list[JSON] = field(default_factory=list)
    request: RequestInfo | None = None
    clock: Callable[[], float] = time.time
    meter_event_ids: dict[tuple[str, str], JSON] = field(default_factory=dict)
    _journal: dict[str, tuple[str, JSON | None]] | None = None
    _journal_events: int = 0
    _journal_meter_keys: list[tuple[str, str]] = field(default_factory=list)

    def begin(self) -> None:
        """Start journaling: every object touched from now on can be put back by ``rollback``."""
        self._journal = {}
        self._journal_events = len(self.new_events)
        self._journal_meter_keys = []

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        """Undo every change since ``begin`` (objects added, changed or removed, events emitted)."""
        journal, self._journal = self._journal, None
        if journal is None:
            return
        for object_id, (kind, original) in journal.items():
            current = self.kinds_by_id.pop(object_id, None)
            if current is not None:
                self.objects.get(current, {}).pop(object_id, None)
            if original is not None:
                self.objects.setdefault(kind, {})[object_id] = original
                self.kinds_by_id[object_id] = kind
        del self.new_events[self._journal_events :]
        for key in self._journal_meter_keys:
            self.meter_event_ids.pop(key, None)

    def _touch(self, kind: str, obj: JSON) -> JSON:
        journal = self._journal
        if journal is not None and obj["id"] not in journal:
            journal[obj["id"]] = (kind, copy.deepcopy(obj))
        return obj

    def remember_meter_event(self, key: tuple[str, str], event: JSON) -> None:
        self.meter_event_ids[key] = event
        if self._journal is not None:
            self._journal_meter_keys.append(key)

    def reset(self) -> None:
        self._journal = None
        self.objects.clear()
        self.kinds_by_id.clear()
        self.new_events.clear()
        self.meter_event_ids.clear()

    def new_id(self, prefix: str) -> str:
        while True:
            candidate = prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(14))
            if candidate not in self.kinds_by_id:
                return candidate

    def add(self, kind: str, obj: JSON) -> JSON:
        if self._journal is not None and obj["id"] not in self._journal:
            self._journal[obj["id"]] = (kind, None)
        self.objects.setdefault(kind, {})[obj["id"]] = obj
        self.kinds_by_id[obj["id"]] = kind
        return obj

    def remove(self, kind: str, object_id: str) -> None:
        obj = self.objects.get(kind, {}).get(object_id)
        if obj is not None:
            self._touch(kind, obj)
        self.objects.get(kind, {}).pop(object_id, None)
        self.kinds_by_id.pop(object_id, None)

    def get(self, kind: str, object_id: str | None, param: str = "id") -> JSON:
        """The object (to read or change), or Stripe's 404 naming ``param``."""
        if not object_id:
            raise resource_missing(KIND_NAMES.get(kind, kind), str(object_id), param)
        obj = self.objects.get(kind, {}).get(object_id)
        if obj is None:
            raise resource_missing(KIND_NAMES.get(kind, kind), object_id, param)
        return self._touch(kind, obj)

    def lookup(self, kind: str, object_id: str | None) -> JSON | None:
        """The object if it exists (to read or change), else None."""
        obj = self.objects.get(kind, {}).get(object_id or "")
        return None if obj is None else self._touch(kind, obj)

    def find(self, object_id: str) -> JSON | None:
        kind = self.kinds_by_id.get(object_id)
        if kind is None:
            return None
        return self.lookup(kind, object_id)

    def all(self, kind: str) -> list[JSON]:
        """Every object of ``kind`` in creation order, to read; ``get`` one before changing it."""
        return list(self.objects.get(kind, {}).values())

    def real_now(self) -> int:
        return int(self.clock())

    def now_for_clock(self, clock_id: str | None) -> int:
        if clock_id:
            clock = self.objects.get("test_helpers.test_clock", {}).get(clock_id)
            if clock is not None:
                return int(clock["frozen_time"])
        return self.real_now()

    def now_for_customer(self, customer_id: str | None) -> int:
        if customer_id:
            customer = self.objects.get("customer", {}).get(customer_id)
            if customer is not None:
                return self.now_for_clock(customer.get("test_clock"))
        return self.real_now()

    def _event_time(self, obj: JSON) -> int:
        if obj.get("object") == "customer":
            return self.now_for_clock(obj.get("test_clock"))
        customer = obj.get("customer")
        return self.now_for_customer(customer if isinstance(customer, str) else None)

    def emit(
        self,
        type_: str,
        obj: JSON,
        *,
        previous: JSON | None = None,
        before: JSON | None = None,
        created: int | None = None,
    ) -> JSON:
        """Record an event with a snapshot of ``obj``; webhooks deliver it after the request.

        ``before`` (the object as served before the change) yields ``previous_attributes`` by
        Stripe's rules (``previous_attributes``); ``previous`` gives them as they are."""
        if before is not None:
            previous = previous_attributes(before, obj)
        data: JSON = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = copy.deepcopy(previous)
        event: JSON = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created if created is not None else self._event_time(obj),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {
                "id": self.request.request_id if self.request else None,
                "idempotency_key": self.request.idempotency_key if self.request else None,
            },
            "type": type_,
        }
        self.add("event", event)
        self.new_events.append(event)
        return event


def previous_attributes(before: JSON, after: JSON) -> JSON:
    """An ``*.updated`` event's ``data.previous_attributes`` as Stripe sends them: every changed
    key with its old value; a nested object (a ``list`` envelope too) holds only its changed
    keys, a key that was absent is null, and a changed array is given whole (so a renewed
    subscription's ``items`` is ``{"data": [every item with its old period]}``)."""
    out: JSON = {}
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out[key] = previous_attributes(old, new)
        else:
            out[key] = copy.deepcopy(old)
    return out


def list_object(data: list[JSON], url: str, has_more: bool = False) -> JSON:
    """Stripe's ``list`` envelope."""
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def _created_filter(params: Params, items: list[JSON]) -> list[JSON]:
    created = params.raw("created")
    if created is None:
        return items
    if isinstance(created, str):
        exact = params.req_int("created")
        return [o for o in items if o.get("created") == exact]
    bounds = params.sub("created")
    assert bounds is not None
    out = items
    for op in ("gt", "gte", "lt", "lte"):
        bound = bounds.int_(op)
        if bound is None:
            continue
        if op == "gt":
            out = [o for o in out if o["created"] > bound]
        elif op == "gte":
            out = [o for o in out if o["created"] >= bound]
        elif op == "lt":
            out = [o for o in out if o["created"] < bound]
        else:
            out = [o for o in out if o["created"] <= bound]
    return out


def paginate(items: Iterable[JSON], params: Params, url: str) -> JSON:
    """Newest first; ``limit`` 1..100 (default 10); ``starting_after`` / ``ending_before``."""
    ordered = _created_filter(params, list(items))
    ordered.reverse()
    limit = params.int_("limit")
    if limit is None:
        limit = 10
    if limit < 1 or limit > 100:
        raise invalid_param("limit", "This value must be between 1 and 100 (inclusive).")
    after = params.str_("starting_after")
    before = params.str_("ending_before")
    ids = [o["id"] for o in ordered]
    if after is not None:
        if after not in ids:
            raise resource_missing("object", after, "starting_after")
        rest = ordered[ids.index(after) + 1 :]
        return list_object(rest[:limit], url, len(rest) > limit)
    if before is not None:
        if before not in ids:
            raise resource_missing("object", before, "ending_before")
        head = ordered[: ids.index(before)]
        window = head[-limit:]
        return list_object(window, url, len(head) > limit)
    return list_object(ordered[:limit], url, len(ordered) > limit)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def public(obj: JSON) -> JSON:
    """A deep copy without the emulator's private bookkeeping keys (those starting with ``_``)."""
    out: JSON = _strip(obj)
    return out


def public_list(objs: list[JSON]) -> list[JSON]:
    return [public(o) for o in objs]
