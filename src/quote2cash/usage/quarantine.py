"""The usage quarantine: records intake refused, kept with their reason until a person corrects
and resubmits them. Every correction and resubmission is an authenticated operator's decision,
audited; a record that fails again stays held with its new reason (nothing is dropped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.identity import Operator
from quote2cash.store.schema import usage_quarantine
from quote2cash.usage.intake import AUDIT_CHAIN, BatchReceipt, UsageIntake
from quote2cash.usage.reading import FIELDS

STATUSES: Final = ("held", "resubmitted")
CORRECTABLE: Final = tuple(f for f in FIELDS if f not in ("id", "correction"))
"""A correction may change every field but the record's id (that is its identity)."""


class UsageQuarantineError(ValueError):
    """A quarantine decision that cannot be taken; the message is safe to show."""


@dataclass(frozen=True)
class QuarantinedRecord:
    id: int
    batch_id: str
    source: str
    record_id: str | None
    line: int | None
    field: str
    reason: str
    status: str
    raw: dict[str, Any]
    corrected: dict[str, Any] | None
    received_at: Any
    decided_by: str | None
    decided_at: Any
    resubmitted_batch: str | None

    @property
    def values(self) -> dict[str, Any]:
        """What a resubmission sends: the correction where there is one, else the original."""
        return self.corrected if self.corrected is not None else self.raw

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "batch_id": self.batch_id,
            "source": self.source,
            "record_id": self.record_id,
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "status": self.status,
            "raw": self.raw,
            "corrected": self.corrected,
            "received_at": self.received_at,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "resubmitted_batch": self.resubmitted_batch,
        }


def _record(row: Any) -> QuarantinedRecord:
    return QuarantinedRecord(
        id=int(row.id),
        batch_id=str(row.batch_id),
        source=str(row.source),
        record_id=row.record_id,
        line=row.line,
        field=str(row.field),
        reason=str(row.reason),
        status=str(row.status),
        raw={k: v for k, v in json.loads(row.raw).items() if v is not None},
        corrected=json.loads(row.corrected) if row.corrected else None,
        received_at=row.received_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        resubmitted_batch=row.resubmitted_batch,
    )


def _may_decide(by: Operator, what: str) -> None:
    if not by.holds("operator"):
        raise UsageQuarantineError(f"{what}: {by.name} needs the operator role")


class UsageQuarantine:
    """List, show, correct and resubmit quarantined usage records."""

    def __init__(self, intake: UsageIntake) -> None:
        self.intake = intake
        self.engine = intake.engine

    def records(
        self, *, status: str | None = "held", batch_id: str | None = None, limit: int = 100
    ) -> list[QuarantinedRecord]:
        if status is not None and status not in STATUSES:
            raise UsageQuarantineError(f"status {status!r}: expected one of {STATUSES}")
        query = select(usage_quarantine).order_by(usage_quarantine.c.id).limit(limit)
        if status:
            query = query.where(usage_quarantine.c.status == status)
        if batch_id:
            query = query.where(usage_quarantine.c.batch_id == batch_id)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def show(self, ident: int) -> QuarantinedRecord:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(usage_quarantine).where(usage_quarantine.c.id == ident)
            ).one_or_none()
        if row is None:
            raise UsageQuarantineError(f"quarantined usage record {ident}: no such record")
        return _record(row)

    def correct(
        self, ident: int, changes: dict[str, Any], *, by: Operator, note: str | None = None
    ) -> QuarantinedRecord:
        """Record a person's correction (field -> new value; null removes it); audited."""
        _may_decide(by, f"correct quarantined usage record {ident}")
        record = self.show(ident)
        if record.status != "held":
            raise UsageQuarantineError(
                f"quarantined usage record {ident} is {record.status}: only a held one is corrected"
            )
        unknown = sorted(set(changes) - set(CORRECTABLE))
        if unknown:
            raise UsageQuarantineError(
                f"quarantined usage record {ident}: field(s) {', '.join(unknown)} cannot be "
                f"corrected: expected some of {', '.join(CORRECTABLE)}"
            )
        corrected = {**record.values, **changes}
        corrected = {k: v for k, v in corrected.items() if v is not None}
        corrected["id"] = record.raw.get("id")
        now = self.intake.clock.now()
        with self.engine.begin() as conn:
            conn.execute(
                update(usage_quarantine)
                .where(usage_quarantine.c.id == ident)
                .values(corrected=json.dumps(corrected, sort_keys=True, default=str))
            )
            append_audit(
                conn,
                [
                    AuditEntry(
                        by.name,
                        "usage.quarantine.corrected",
                        entity=f"usage-quarantine:{ident}",
                        details={
                            "source": record.source,
                            "record_id": record.record_id,
                            "before": record.values,
                            "after": corrected,
                            "note": note,
                        },
                    )
                ],
                now,
                chain=AUDIT_CHAIN,
            )
        return self.show(ident)

    def resubmit(self, idents: list[int], *, by: Operator) -> list[BatchReceipt]:
        """Run held records (corrected or as they were) through intake again, as ``by``."""
        if not idents:
            raise UsageQuarantineError("resubmit: give at least one quarantined record id")
        _may_decide(by, "resubmit quarantined usage records")
        records = [self.show(i) for i in idents]
        done = [r.id for r in records if r.status != "held"]
        if done:
            raise UsageQuarantineError(
                f"quarantined usage record(s) {', '.join(map(str, done))} are not held: "
                "only held records are resubmitted"
            )
        return self.intake.resubmit([(r.id, r.source, r.values) for r in records], actor=by.name)
