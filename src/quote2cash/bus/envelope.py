"""The wire form of a business event: a CloudEvents 1.0 structured-mode JSON envelope carrying
the hub's ``correlation_id`` and ``causation_id`` (DESIGN section 3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from quote2cash.bus.catalog import cloudevents_type
from quote2cash.engine.events import decode_data

SPEC_VERSION = "1.0"
SOURCE = "q2c"
MSG_ID_HEADER = "Nats-Msg-Id"

_encoder = msgspec.json.Encoder(decimal_format="string")


@dataclass(frozen=True)
class OutboxRow:
    """One unpublished outbox row, as the publisher reads it."""

    id: int
    message_id: str
    type: str
    subject: str
    correlation_id: str
    causation_id: str
    time: datetime
    data: str

    def envelope(self) -> dict[str, Any]:
        return {
            "specversion": SPEC_VERSION,
            "id": self.message_id,
            "source": SOURCE,
            "type": cloudevents_type(self.type),
            "subject": self.subject,
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "schema_version": 1,
            "data": decode_data(self.data),
        }

    def payload(self) -> bytes:
        return _encoder.encode(self.envelope())
