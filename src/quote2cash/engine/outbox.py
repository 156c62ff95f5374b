"""The transactional outbox: business events written in the same commit as the outcome of the
event whose steps made them true, so the stream never tells of a change the store lost, and a
change the store kept is always told (the bus publisher sends them, ``quote2cash.bus``).

A row's ``message_id`` is derived from (event, business type, key): a re-run or retry of the
event writes the same id, which the unique key turns into a no-op; JetStream drops a re-publish
of it by its ``Nats-Msg-Id``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from quote2cash.engine.events import encode_data
from quote2cash.store.schema import outbox

BUSINESS_TYPE: Final = re.compile(r"^[a-z][a-z0-9_]{0,40}\.[a-z][a-z0-9_]{0,40}$")
"""``<entity>.<verb>``: two tokens, so its subject ``<prefix>.<entity>.<verb>`` is the stream's."""
MAX_DATA_BYTES: Final = 256 * 1024
"""Well under NATS's default max_payload (1 MB) with the envelope around it: a business event
the server would refuse can never reach the outbox and stall the stream behind it."""


class Outgoing(msgspec.Struct, kw_only=True, frozen=True):
    """One business event as the outbox keeps it: the envelope's fields, ``data`` as JSON text."""

    message_id: str
    type: str
    subject: str
    correlation_id: str
    causation_id: str
    time: datetime
    data: str


def outgoing_data(event_type: str, data: dict[str, Any]) -> str:
    """``data`` as the outbox keeps it; a type or payload the stream could not carry is a
    ``ValueError`` naming it, raised in the handler that publishes it (never in a commit)."""
    if not BUSINESS_TYPE.match(event_type):
        raise ValueError(
            f"business event type {event_type!r}: expected '<entity>.<verb>' (lower case)"
        )
    try:
        text = encode_data(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValueError(f"business event {event_type}: data is not JSON-able ({exc})") from None
    if len(text.encode()) > MAX_DATA_BYTES:
        raise ValueError(
            f"business event {event_type}: data is {len(text.encode())} bytes; expected at most "
            f"{MAX_DATA_BYTES}"
        )
    return text


def write_outbox(conn: Connection, messages: Sequence[Outgoing], at: datetime) -> int:
    """Insert ``messages`` in ``conn``'s transaction; ones already there (a re-run) are skipped.

    Returns how many rows were new."""
    if not messages:
        return 0
    rows = list(
        {
            m.message_id: {
                "message_id": m.message_id,
                "type": m.type,
                "subject": m.subject,
                "correlation_id": m.correlation_id,
                "causation_id": m.causation_id,
                "time": m.time,
                "data": m.data,
                "recorded_at": at,
            }
            for m in messages
        }.values()
    )
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    result = conn.execute(
        insert(outbox).on_conflict_do_nothing(index_elements=[outbox.c.message_id]), rows
    )
    return max(result.rowcount or 0, 0)
