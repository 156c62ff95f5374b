"""The quarantine: signed webhook deliveries the hub could not understand, kept whole.

Guarantees: a delivery is stored once per (source, body) with its raw body, the headers that
re-verify it (never a secret) and why it was not understood; it stays ``held`` until an
authenticated operator releases it (it was understood and logged) or discards it, each
decision audited. Nothing here parses the body: understanding it is the intake's job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.control import ControlError
from quote2cash.engine.events import Event
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.store.schema import quarantine

STATUSES: Final = ("held", "released", "discarded")
KEPT_HEADERS: Final = ("Content-Type", "Stripe-Signature", "X-Q2C-Signature", "User-Agent")
"""What re-verifies a delivery and tells where it came from; signatures are digests, not keys."""
MAX_REASON: Final = 2000


class QuarantineError(ControlError):
    """A quarantine decision that cannot be taken (unknown id, already decided); safe to show."""


class UnknownDelivery(QuarantineError):
    """No quarantined delivery with the id given."""


@dataclass(frozen=True)
class QuarantinedDelivery:
    id: int
    source: str
    reason: str
    received_at: datetime
    status: str
    body: bytes
    headers: dict[str, str]
    body_sha256: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None
    event_id: str | None = None

    def summary(self) -> dict[str, Any]:
        """The delivery without its body: what a list shows."""
        return {
            "id": self.id,
            "source": self.source,
            "reason": self.reason,
            "received_at": self.received_at,
            "status": self.status,
            "body_sha256": self.body_sha256,
            "size": len(self.body),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "decision_note": self.decision_note,
            "event_id": self.event_id,
        }


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a quarantined delivery keeps (the rest, e.g. credentials, are dropped)."""
    return {name: headers[name] for name in KEPT_HEADERS if name in headers}


def _safe_text(text: str) -> str:
    """Text any store and any JSON encoder takes (a lone surrogate becomes U+FFFD)."""
    return text.encode("utf-8", "replace").decode("utf-8")[:MAX_REASON]


def quarantine_delivery(
    runtime: Runtime, source: str, body: bytes, headers: Mapping[str, str], reason: str
) -> tuple[int, bool]:
    """Keep a delivery; returns (its id, whether the same body from the same source was
    already kept). Committed before the caller answers the sender."""
    digest = hashlib.sha256(body).hexdigest()
    values = {
        "source": source,
        "body_sha256": digest,
        "body": body,
        "headers": json.dumps(
            {k: _safe_text(v) for k, v in kept_headers(headers).items()}, sort_keys=True
        ),
        "reason": _safe_text(reason),
        "received_at": runtime.clock.now(),
        "status": "held",
    }
    try:
        with runtime.engine.begin() as conn:
            new_id = conn.execute(insert(quarantine).values(values)).inserted_primary_key
            assert new_id is not None
            return int(new_id[0]), False
    except IntegrityError:
        with runtime.engine.connect() as conn:
            existing = conn.execute(
                select(quarantine.c.id).where(
                    quarantine.c.source == source, quarantine.c.body_sha256 == digest
                )
            ).scalar_one()
        return int(existing), True


def _row(r: Any) -> QuarantinedDelivery:
    return QuarantinedDelivery(
        id=int(r.id),
        source=r.source,
        reason=r.reason,
        received_at=r.received_at,
        status=r.status,
        body=bytes(r.body),
        headers=json.loads(r.headers),
        body_sha256=r.body_sha256,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        decision_note=r.decision_note,
        event_id=r.event_id,
    )


def list_quarantine(
    runtime: Runtime, *, status: str | None = "held", limit: int = 50, after: int | None = None
) -> list[QuarantinedDelivery]:
    """Oldest first, ``after`` an id (keyset paging); ``status=None`` lists every delivery."""
    if status is not None and status not in STATUSES:
        raise QuarantineError(f"status is {status!r}; expected one of {list(STATUSES)}")
    q = select(quarantine).order_by(quarantine.c.id).limit(limit)
    if status is not None:
        q = q.where(quarantine.c.status == status)
    if after is not None:
        q = q.where(quarantine.c.id > after)
    with runtime.engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def get_quarantined(runtime: Runtime, delivery_id: int) -> QuarantinedDelivery:
    with runtime.engine.connect() as conn:
        row = conn.execute(select(quarantine).where(quarantine.c.id == delivery_id)).first()
    if row is None:
        raise UnknownDelivery(f"no quarantined delivery {delivery_id}")
    return _row(row)


def _decide(
    conn: Connection,
    delivery: QuarantinedDelivery,
    status: str,
    by: Operator,
    note: str,
    now: datetime,
    event_id: str | None = None,
) -> None:
    result = conn.execute(
        update(quarantine)
        .where(quarantine.c.id == delivery.id, quarantine.c.status == "held")
        .values(
            status=status, decided_by=by.name, decided_at=now, decision_note=note, event_id=event_id
        )
    )
    if result.rowcount != 1:
        raise QuarantineError(f"quarantined delivery {delivery.id} was decided meanwhile")
    append_audit(
        conn,
        [
            AuditEntry(
                by.name,
                f"quarantine.{status}",
                f"quarantine:{delivery.id}",
                details={
                    "source": delivery.source,
                    "body_sha256": delivery.body_sha256,
                    "note": note,
                    "event_id": event_id,
                    "via": by.via,
                },
            )
        ],
        now,
    )


def _held(runtime: Runtime, delivery_id: int) -> QuarantinedDelivery:
    delivery = get_quarantined(runtime, delivery_id)
    if delivery.status != "held":
        raise QuarantineError(
            f"quarantined delivery {delivery_id} is already {delivery.status} "
            f"(by {delivery.decided_by})"
        )
    return delivery


def discard_delivery(runtime: Runtime, delivery_id: int, *, by: Operator, reason: str) -> None:
    """An operator decides the delivery is not to be taken in (e.g. a test sent by mistake)."""
    by.require("operator", "discard a quarantined delivery")
    if not reason.strip():
        raise QuarantineError("discarding a quarantined delivery needs a reason")
    delivery = _held(runtime, delivery_id)
    with runtime.engine.begin() as conn:
        _decide(conn, delivery, "discarded", by, reason, runtime.clock.now())


def release_delivery(
    runtime: Runtime,
    delivery_id: int,
    understand: Callable[[QuarantinedDelivery], Event],
    *,
    by: Operator,
    note: str = "",
) -> Event:
    """Take a held delivery in: ``understand`` builds its event (raising QuarantineError with
    the reason if the hub still cannot), which is logged with the decision in one commit."""
    by.require("operator", "release a quarantined delivery")
    delivery = _held(runtime, delivery_id)
    event = understand(delivery)
    with runtime.engine.begin() as conn:
        runtime.log.append_in(conn, [event])
        _decide(conn, delivery, "released", by, note, runtime.clock.now(), event.id)
    return event
