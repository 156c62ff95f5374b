"""The official ``stripe`` SDK over aiohttp, with the engine's error taxonomy.

Guarantees: every call leaves either with Stripe's answer or as a ``quote2cash.engine.errors``
exception naming the system and the operation, never a raw ``stripe`` exception, never the API
key. Each call is tried once (the SDK's own retries are off): 429s, 5xx, timeouts and connection
errors leave as ``TransientError`` carrying ``Retry-After``, and the engine's layer retries them.
Retrying never duplicates anything: every POST carries the step's idempotency key.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import aiohttp
import stripe

from quote2cash.connectors import http
from quote2cash.connectors.stripe.config import StripeConfig
from quote2cash.engine.errors import (
    AuthError,
    ConflictError,
    DataError,
    IntegrationError,
    TransientError,
)
from quote2cash.engine.systems import request_token

__all__ = [
    "CardDeclined",
    "InvalidRequest",
    "ResourceMissing",
    "StripeApi",
    "map_stripe_error",
    "plain",
]

T = TypeVar("T")

_KEY_PATTERN: Final = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+")
_RESOURCE_IN_MESSAGE: Final = re.compile(r"No such ([a-z_ ]+?): '([^']+)'")


class InvalidRequest(DataError):
    """Stripe refused the request's data; ``code`` and ``param`` as Stripe gave them."""

    def __init__(
        self, message: str, *, system: str | None, code: str | None, param: str | None
    ) -> None:
        super().__init__(message, system=system)
        self.code = code
        self.param = param


class ResourceMissing(InvalidRequest):
    """Stripe has no such object (``resource_missing``); ``resource_id`` is the id it named."""

    def __init__(
        self, message: str, *, system: str | None, param: str | None, resource_id: str | None
    ) -> None:
        super().__init__(message, system=system, code="resource_missing", param=param)
        self.resource_id = resource_id


class CardDeclined(DataError):
    """A card payment was declined: ``code`` / ``decline_code`` as Stripe gave them."""

    def __init__(
        self, message: str, *, system: str | None, code: str | None, decline_code: str | None
    ) -> None:
        super().__init__(message, system=system)
        self.code = code
        self.decline_code = decline_code


def _scrub(text: str, secret: str | None = None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


def _limited_reason(error: stripe.StripeError) -> str:
    """Stripe's ``Stripe-Rate-Limited-Reason`` (global-rate, endpoint-concurrency, ...), if sent."""
    reason = http.header(error.headers, "Stripe-Rate-Limited-Reason")
    return f" ({reason[:40]})" if reason else ""


def retry_after_of(error: stripe.StripeError) -> float | None:
    """Seconds from the ``Retry-After`` header Stripe (or a proxy) sent, if usable."""
    return http.retry_after_seconds(http.header(error.headers, "Retry-After"))


def map_stripe_error(
    error: stripe.StripeError, operation: str, *, system: str = "billing", secret: str | None = None
) -> IntegrationError:
    """The engine error for one Stripe failure; the message names the operation, never the key."""
    status = error.http_status
    raw = _scrub(error.user_message or "", secret)
    if isinstance(error, stripe.AuthenticationError):
        return AuthError(
            f"Stripe rejected the API key while trying to {operation} (HTTP {status}); "
            "check the billing connector's api_key",
            system=system,
        )
    if isinstance(error, stripe.PermissionError):
        return AuthError(
            f"the API key may not {operation} (HTTP {status}: permission denied); "
            "give the restricted key this permission",
            system=system,
        )
    if isinstance(error, stripe.RateLimitError):
        return TransientError(
            f"rate limited by Stripe while trying to {operation}" + _limited_reason(error),
            system=system,
            retry_after=retry_after_of(error) or 1.0,
            throttled=True,
        )
    if isinstance(error, stripe.APIConnectionError):
        return TransientError(
            f"could not reach Stripe to {operation} (connection error or timeout)", system=system
        )
    if isinstance(error, stripe.IdempotencyError):
        return ConflictError(
            f"cannot {operation}: the idempotency key was used before with different "
            f"parameters ({raw})",
            system=system,
        )
    if isinstance(error, stripe.CardError):
        decline = getattr(error.error, "decline_code", None) if error.error else None
        return CardDeclined(
            f"card declined while trying to {operation}: {error.code or 'card_error'}"
            + (f" ({decline})" if decline else "")
            + (f": {raw}" if raw else ""),
            system=system,
            code=error.code,
            decline_code=decline,
        )
    if isinstance(error, stripe.InvalidRequestError):
        param = error.param
        if error.code == "resource_missing":
            found = _RESOURCE_IN_MESSAGE.search(raw)
            what = f"no such {found.group(1)} {found.group(2)!r}" if found else raw
            return ResourceMissing(
                f"cannot {operation}: {what}" + (f" (parameter {param})" if param else ""),
                system=system,
                param=param,
                resource_id=found.group(2) if found else None,
            )
        where = f" (parameter {param})" if param else ""
        return InvalidRequest(
            f"Stripe refused to {operation}{where}: {raw}",
            system=system,
            code=error.code,
            param=param,
        )
    if status is None:
        return DataError(
            f"Stripe refused to {operation}: {raw or type(error).__name__}", system=system
        )
    if status == 409 or http.header(error.headers, "Stripe-Should-Retry") == "true":
        return TransientError(
            f"Stripe asks to try again later to {operation} (HTTP {status}): {raw}",
            system=system,
            retry_after=retry_after_of(error),
        )
    return http.status_error(
        status,
        f"Stripe failed to {operation}",
        system=system,
        headers=error.headers,
        detail=raw or type(error).__name__,
    )


class StripeApi:
    """One Stripe account through ``stripe.StripeClient`` on aiohttp; ``call`` wraps every request.

    No retries here, neither the SDK's nor our own: a transient failure goes to the engine, which
    retries with the event's backoff, so a rate limit never sleeps inside a step.
    """

    def __init__(self, config: StripeConfig, *, system: str = "billing") -> None:
        self.config = config
        self.system = system
        self._http = stripe.AIOHTTPClient(
            timeout=aiohttp.ClientTimeout(
                total=config.request_timeout, connect=config.connect_timeout
            )
        )
        self.sdk = stripe.StripeClient(
            api_key=config.api_key.get_secret_value(),
            base_addresses={"api": config.base_url} if config.base_url else None,
            http_client=self._http,
            max_network_retries=0,
        )

    def __repr__(self) -> str:
        return f"StripeApi(system={self.system!r}, base_url={self.config.base_url!r})"

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def call(self, operation: str, request: Callable[[], Awaitable[T]]) -> T:
        """Run ``request`` (one SDK call) once; a failure leaves as the engine's error.

        ``operation`` completes "trying to ..." in messages, e.g. ``"create subscription C-1"``.
        """
        await request_token(self.system)  # the step's budgets hold per request sent
        try:
            return await request()
        except stripe.StripeError as error:
            raise map_stripe_error(
                error, operation, system=self.system, secret=self.config.api_key.get_secret_value()
            ) from None


def plain(obj: Any) -> dict[str, Any]:
    """An SDK object as plain dicts and lists (what ``mapping`` takes)."""
    if isinstance(obj, dict) and not isinstance(obj, stripe.StripeObject):
        return obj
    result: dict[str, Any] = obj.to_dict()
    return result
