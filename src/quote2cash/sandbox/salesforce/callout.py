"""Outbound "Closed Won" callouts, like a record-triggered Flow with an HTTP callout.

Messages are POSTed as JSON with ``X-Q2C-Signature: t=<unix seconds>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, f"{t}." + raw body bytes)``; see the package docstring.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from .values import dumps

SIGNATURE_HEADER = "X-Q2C-Signature"
MESSAGE_ID_HEADER = "X-Q2C-Message-Id"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is recent enough."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Delivery:
    """One message and what happened to it; listed by the admin endpoint."""

    message_id: str
    opportunity_id: str
    body: bytes
    status: str = "pending"  # pending, delivered, failed, not_configured
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "opportunityId": self.opportunity_id,
            "status": self.status,
            "attempts": self.attempts,
            "lastStatusCode": self.last_status_code,
            "lastError": self.last_error,
        }


class CalloutDispatcher:
    """Delivers messages asynchronously with bounded retries and exponential backoff."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.secret: str | None = None
        self.max_attempts = 5
        self.backoff_seconds = 0.5
        self.timeout_seconds = 10.0
        self.deliveries: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def submit(self, opportunity_id: str, payload: dict[str, Any]) -> Delivery:
        message_id = str(uuid.uuid4())
        payload = {"messageId": message_id, **payload}
        delivery = Delivery(message_id, opportunity_id, dumps(payload))
        self.deliveries.append(delivery)
        if not self.url or not self.secret:
            delivery.status = "not_configured"
            return delivery
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            delivery.status, delivery.last_error = "failed", "no running event loop"
            return delivery
        task = loop.create_task(self._deliver(delivery, self.url, self.secret))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _deliver(self, delivery: Delivery, url: str, secret: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        while delivery.attempts < self.max_attempts:
            delivery.attempts += 1
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret, int(time.time()), delivery.body),
                MESSAGE_ID_HEADER: delivery.message_id,
                "X-Q2C-Delivery-Attempt": str(delivery.attempts),
            }
            try:
                async with self._session.post(
                    url, data=delivery.body, headers=headers, timeout=timeout
                ) as response:
                    await response.read()
                    delivery.last_status_code = response.status
                    delivery.last_error = None
                    if 200 <= response.status < 300:
                        delivery.status = "delivered"
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                delivery.last_error = f"{type(exc).__name__}: {exc}"
            if delivery.attempts < self.max_attempts:
                await asyncio.sleep(self.backoff_seconds * 2 ** (delivery.attempts - 1))
        delivery.status = "failed"

    def clear(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.deliveries.clear()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
