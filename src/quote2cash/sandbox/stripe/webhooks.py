"""Events API, webhook endpoints, and signed delivery with bounded retries.

A delivery is ``POST url`` with the event JSON and ``Stripe-Signature: t=<unix>,v1=<hex>`` where the
signature is HMAC-SHA256 over ``"<t>.<payload>"`` keyed with the endpoint's ``whsec_`` secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field

import aiohttp

from .errors import invalid_param
from .params import Params
from .routing import route
from .store import API_VERSION, JSON, Store, paginate, public

log = logging.getLogger(__name__)


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass
class DeliveryAttempt:
    endpoint: str
    event: str
    attempt: int
    status: int | None
    error: str | None = None


@dataclass
class WebhookDispatcher:
    """Delivers events to matching endpoints in the background; retries with doubling delays."""

    store: Store
    max_attempts: int = 4
    first_retry_delay: float = 0.2
    timeout: float = 5.0
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def dispatch(self, events: list[JSON]) -> None:
        endpoints = [e for e in self.store.all("webhook_endpoint") if e["status"] == "enabled"]
        for event in events:
            for endpoint in endpoints:
                wanted = endpoint["enabled_events"]
                if "*" in wanted or event["type"] in wanted:
                    event["pending_webhooks"] += 1
                    task = asyncio.get_running_loop().create_task(self._deliver(endpoint, event))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _deliver(self, endpoint: JSON, event: JSON) -> None:
        payload = json.dumps(event, indent=2)
        delay = self.first_retry_delay
        for attempt in range(1, self.max_attempts + 1):
            status: int | None = None
            error: str | None = None
            try:
                if self._session is None or self._session.closed:
                    self._session = aiohttp.ClientSession()
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": sign(payload, endpoint["_secret"]),
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                }
                async with self._session.post(
                    endpoint["url"],
                    data=payload,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = type(exc).__name__
            self.attempts.append(
                DeliveryAttempt(endpoint["id"], event["id"], attempt, status, error)
            )
            if status is not None and 200 <= status < 300:
                event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
                return
            if attempt < self.max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning(
            "webhook delivery of %s to %s gave up after %d attempts",
            event["id"],
            endpoint["id"],
            self.max_attempts,
        )

    def cancel_all(self) -> None:
        """Abandon deliveries in flight (reset)."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    async def drain(self) -> None:
        """Wait for deliveries in flight (used on stop and by tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _endpoint_json(endpoint: JSON, with_secret: bool = False) -> JSON:
    out: JSON = public(endpoint)
    if with_secret:
        out["secret"] = endpoint["_secret"]
    return out


def _events_param(p: Params) -> list[str]:
    events = p.strings("enabled_events")
    if not events:
        raise invalid_param(
            "enabled_events", "Missing required param: enabled_events.", code="parameter_missing"
        )
    return events


@route("POST", "/v1/webhook_endpoints")
def create_webhook_endpoint(store: Store, p: Params) -> JSON:
    p.allow("url", "enabled_events", "description", "metadata", "api_version", "connect")
    url = p.req_str("url")
    if not url.startswith(("http://", "https://")):
        raise invalid_param("url", f"Invalid URL: {url}", code="url_invalid")
    endpoint: JSON = {
        "id": store.new_id("we"),
        "object": "webhook_endpoint",
        "api_version": p.str_("api_version") or API_VERSION,
        "application": None,
        "created": store.real_now(),
        "description": p.str_("description"),
        "enabled_events": _events_param(p),
        "livemode": False,
        "metadata": p.metadata(),
        "status": "enabled",
        "url": url,
        "_secret": "whsec_" + secrets.token_hex(16),
    }
    store.add("webhook_endpoint", endpoint)
    return _endpoint_json(endpoint, with_secret=True)


@route("GET", "/v1/webhook_endpoints/{id}")
def retrieve_webhook_endpoint(store: Store, p: Params, id: str) -> JSON:
    return _endpoint_json(store.get("webhook_endpoint", id))


@route("POST", "/v1/webhook_endpoints/{id}")
def update_webhook_endpoint(store: Store, p: Params, id: str) -> JSON:
    p.allow("url", "enabled_events", "description", "metadata", "disabled")
    endpoint = store.get("webhook_endpoint", id)
    if p.has("url"):
        endpoint["url"] = p.req_str("url")
    if p.has("enabled_events"):
        endpoint["enabled_events"] = _events_param(p)
    if p.has("description"):
        endpoint["description"] = p.str_("description")
    if p.has("disabled"):
        endpoint["status"] = "disabled" if p.bool_("disabled") else "enabled"
    endpoint["metadata"] = p.metadata(endpoint["metadata"])
    return _endpoint_json(endpoint)


@route("DELETE", "/v1/webhook_endpoints/{id}")
def delete_webhook_endpoint(store: Store, p: Params, id: str) -> JSON:
    store.get("webhook_endpoint", id)
    store.remove("webhook_endpoint", id)
    return {"id": id, "object": "webhook_endpoint", "deleted": True}


@route("GET", "/v1/webhook_endpoints")
def list_webhook_endpoints(store: Store, p: Params) -> JSON:
    return paginate(
        [_endpoint_json(e) for e in store.all("webhook_endpoint")], p, "/v1/webhook_endpoints"
    )


@route("GET", "/v1/events/{id}")
def retrieve_event(store: Store, p: Params, id: str) -> JSON:
    return public(store.get("event", id))


@route("GET", "/v1/events")
def list_events(store: Store, p: Params) -> JSON:
    type_ = p.str_("type")
    types = set(p.strings("types"))
    if type_ is not None and types:
        raise invalid_param("types", "You may pass either `type` or `types`, but not both.")

    def matches(event: JSON) -> bool:
        if type_ is not None:
            if type_.endswith(".*"):
                return bool(event["type"].startswith(type_[:-1]))
            return bool(event["type"] == type_)
        return not types or event["type"] in types

    return paginate([public(e) for e in store.all("event") if matches(e)], p, "/v1/events")
