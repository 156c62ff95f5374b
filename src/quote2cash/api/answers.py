"""The shapes of the main answers, as the OpenAPI document states them (msgspec Structs used
for their JSON Schema only): schemathesis checks every live answer against them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Answer(msgspec.Struct, kw_only=True):
    """Base of the documented answers; fields a later release adds do not break clients."""


class Parked(Answer):
    key: str
    reason: str | None
    deadline: datetime | None


class EventSummary(Answer):
    pos: int
    id: str
    source: str
    type: str
    subject: str
    sequence: int
    status: str
    attempts: int
    correlation_id: str
    time: datetime
    category: str | None
    last_error: str | None
    parked: Parked | None


class EventPage(Answer):
    data: list[EventSummary]
    count: int
    next: str | None = None
    """The URL of the next page (same filters, a keyset cursor): present while a full page was
    answered, absent once a page comes back short (the last one)."""


class ExceptionItem(Answer):
    pos: int
    id: str
    source: str
    type: str
    subject: str
    status: str
    category: str | None
    recoverability: str
    last_error: str | None
    attempts: int
    time: datetime
    correlation_id: str
    finance_sensitive: bool


class ExceptionPage(Answer):
    data: list[ExceptionItem]
    count: int


class Delivery(Answer):
    id: int
    source: str
    reason: str
    received_at: datetime
    status: str
    body_sha256: str
    size: int
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    event_id: str | None


class DeliveryPage(Answer):
    data: list[Delivery]
    count: int


class DeliveryWithBody(Delivery):
    headers: dict[str, str]
    body: str
    body_base64: str


class DeliveryAnswer(Answer):
    delivery: DeliveryWithBody


class ReplayRequest(Answer):
    id: int
    status: str
    requested_by: str
    reason: str
    finance_sensitive: bool
    event_count: int
    positions: list[int]
    decided_by: str | None
    decision_note: str | None
    corrections: dict[str, dict[str, Any]]


class ReplayRequestPage(Answer):
    data: list[ReplayRequest]
    count: int


class ReplayRequestAnswer(Answer):
    request: ReplayRequest


class AuditEntry(Answer):
    seq: int
    at: datetime
    actor: str
    action: str
    entity: str | None
    correlation_id: str | None
    details: dict[str, Any]


class AuditPage(Answer):
    data: list[AuditEntry]
    count: int


class AuditVerification(Answer):
    ok: bool
    checked: int
    first_broken_seq: int | None
    reason: str | None
    key_id: str | None = None
    last_checkpoint_seq: int | None = None
    last_checkpoint_at: str | None = None


class StoreHealth(Answer):
    reachable: bool


class WorkerHealth(Answer):
    enabled: bool
    running: bool


class Health(Answer):
    status: str
    store: StoreHealth
    worker: WorkerHealth
