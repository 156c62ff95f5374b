"""The JSON bodies the ``/v1`` decision routes take, validated with msgspec.

Guarantee: a body that is not JSON, not an object, misses a field, has one of the wrong kind or
an unknown one is refused with a 400 whose message names the field and what was expected.
These Structs are also the OpenAPI document's request schemas (one source of truth).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, TypeVar

import msgspec

from quote2cash.identity import ROLES

T = TypeVar("T")

MAX_TEXT: Final = 2000
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT, pattern=r"\S")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@:-]+$")]
Role = Annotated[str, msgspec.Meta(pattern="^(" + "|".join(ROLES) + ")$")]
Roles = Annotated[list[Role], msgspec.Meta(min_length=1, max_length=len(ROLES))]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
"""An ISO 8601 time with its offset (``...Z`` or ``+00:00``); a naive time is refused."""


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused (a typo never passes silently)."""


class ReplayRequestBody(Body):
    """A replay by event ids, correlation id or event-time range; ``dry_run`` only previews."""

    reason: Text = ""
    event_ids: Annotated[list[EventId], msgspec.Meta(max_length=1000)] = []
    correlation_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    since: AwareTime | None = None
    until: AwareTime | None = None
    include_processed: bool = False
    dry_run: bool = False


class DecisionNote(Body):
    note: Text = ""


class RejectionNote(Body):
    note: Reason


class Correction(Body):
    """The event's whole new ``data`` object (the diff against the old one is audited)."""

    data: dict[str, Any]
    reason: Text = ""


class ReasonBody(Body):
    reason: Reason


class OptionalReason(Body):
    reason: Text = ""


class WindowBody(Body):
    starts_at: AwareTime
    ends_at: AwareTime
    reason: Reason


class TokenBody(Body):
    """A token for the caller; its roles at most the calling credential's."""

    name: Name
    roles: Roles
    ttl_days: Annotated[int, msgspec.Meta(ge=1, le=366)] | None = None


class OperatorBody(Body):
    name: Name
    roles: Roles
    email: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class RolesBody(Body):
    roles: Roles


class EmptyBody(Body):
    """No fields (an empty object, or no body at all)."""


class BodyError(ValueError):
    """A request body that cannot be taken; the message names the field and what was expected."""


def parse_body(raw: bytes, kind: type[T]) -> T:
    """``raw`` as a ``kind``; an empty body counts as ``{}``. Raises BodyError."""
    try:
        return msgspec.json.decode(raw or b"{}", type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise BodyError(f"request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BodyError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BodyError("request body nests too deep") from None


class UsageBatchBody(Body):
    """A batch of usage records (JSON objects, at most 10,000: more is a 413); a record that
    fails validation is quarantined with its reason, never the batch refused for it.
    ``corrections``: a record id seen before with new values amends it (audited)."""

    source: Name
    records: list[Any]
    corrections: bool = False
