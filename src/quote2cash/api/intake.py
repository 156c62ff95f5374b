"""Whether a signed webhook body can be understood at all, checked before anything maps it.

Guarantee: a body that passes ``read_object`` is UTF-8 JSON, an object, at most ``MAX_DEPTH``
deep, with no lone surrogate and no number a float cannot hold; ``stripe_shape`` and
``callout_shape`` add the fields the hub reads. Failing bodies are quarantined, never a 500.
"""

from __future__ import annotations

import reprlib
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from quote2cash.connectors.salesforce import mapping as salesforce_mapping
from quote2cash.connectors.stripe import mapping as stripe_mapping
from quote2cash.engine.events import Event
from quote2cash.engine.quarantine import QuarantinedDelivery, QuarantineError
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.intake import billing_event, deal_event

MAX_DEPTH: Final = 32
"""Stripe events nest about 8 deep; deeper bodies are refused before any recursive code."""
FIRST_SECOND: Final = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())
LAST_SECOND: Final = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())

_decoder = msgspec.json.Decoder()


class Unintelligible(ValueError):
    """A signed body the hub cannot understand; the message names the field and what was
    expected, and is safe to show (it never quotes a secret)."""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _depth(value: Any) -> int:
    """How deep containers nest, without recursion (a body can be deeper than Python's stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, level + 1) for child in children)
    return deepest


def read_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or Unintelligible saying why not."""
    try:
        value = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise Unintelligible(f"the body is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise Unintelligible(f"the body nests deeper than {MAX_DEPTH} levels") from None
    except msgspec.ValidationError as exc:
        raise Unintelligible(f"the body is not usable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Unintelligible(f"the body is {_kind(value)}; expected a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise Unintelligible(f"the body nests deeper than {MAX_DEPTH} levels")
    return value


def _expect(body: dict[str, Any], path: str, kinds: tuple[type, ...], expected: str) -> None:
    """A field that is present must have the expected kind (absent fields are the mapper's)."""
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return
        value = value[part]
    if isinstance(value, str) and "\x00" in value:
        raise Unintelligible(f"field '{path}' holds a NUL character; expected text")
    if value is None or (isinstance(value, kinds) and not isinstance(value, bool)):
        return
    raise Unintelligible(f"field '{path}' is {_kind(value)}; expected {expected}")


def stripe_shape(body: bytes) -> dict[str, Any]:
    """A Stripe event body whose envelope fields have the kinds the hub reads."""
    event = read_object(body)
    for path in ("id", "type"):
        _expect(event, path, (str,), "a string")
    for path in ("data", "data.object", "data.previous_attributes", "data.object.metadata"):
        _expect(event, path, (dict,), "an object")
    created = event.get("created")
    if created is not None and (
        isinstance(created, bool)
        or not isinstance(created, int)
        or not FIRST_SECOND <= created <= LAST_SECOND
    ):
        raise Unintelligible(
            f"field 'created' is {reprlib.repr(created)}; expected unix seconds in the years "
            "1 to 9999"
        )
    return event


def callout_shape(body: bytes) -> dict[str, Any]:
    """A Salesforce Closed-Won callout body whose fields have the kinds the hub reads."""
    message = read_object(body)
    for path in ("messageId", "eventType", "eventTime"):
        _expect(message, path, (str,), "a string")
    _expect(message, "opportunity", (dict,), "an object")
    for path in ("opportunity.Id", "opportunity.Contract_Number__c"):
        _expect(message, path, (str,), "a string")
    return message


def understand_delivery(runtime: Runtime, delivery: QuarantinedDelivery) -> Event:
    """A quarantined body as its event, if the hub understands it now (QuarantineError saying
    why not otherwise); its signature was checked when it arrived."""
    try:
        if delivery.source == "billing":
            be = stripe_mapping.billing_event(stripe_shape(delivery.body))
            return billing_event(runtime, be)
        message = callout_shape(delivery.body)
        if message.get("eventType") != "opportunity.closed_won":
            raise QuarantineError("field 'eventType': expected 'opportunity.closed_won'")
        return deal_event(
            *salesforce_mapping.closed_won_callout(message), time=delivery.received_at
        )
    except Unintelligible as exc:
        raise QuarantineError(f"the hub still cannot understand it: {exc}") from None
    except QuarantineError:
        raise
    except Exception as exc:
        raise QuarantineError(
            f"the hub still cannot take it in ({type(exc).__name__}: {exc})"
        ) from None
