"""What a reconciliation reports: drifts, each with the objects' ids and a proposed repair."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quote2cash.reconcile.compare import Snapshot


class DriftKind(StrEnum):
    MISSING = "missing"
    AMOUNT = "amount"
    TAX = "tax"
    STATUS = "status"
    CURRENCY_OR_ENTITY = "currency_or_entity"
    DUPLICATE = "duplicate"
    ORPHAN = "orphan"
    USAGE = "usage"
    """Usage quantities disagree: ingested, posted, counted by billing or invoiced."""


@dataclass(frozen=True)
class Repair:
    """A replay of a logged event (``event_type`` + ``event_id``), else a step for a person.

    ``event_id`` None with an ``event_type`` means the event to replay was not found in the log.
    """

    action: str
    event_type: str | None = None
    event_id: str | None = None
    finance_sensitive: bool = False
    about: str | None = None
    """The id the event to replay is about (e.g. billing's invoice id), to find it in the log."""
    event_status: str | None = None
    """The event's status in the hub's log; a ``pending`` one has yet to run (no replay yet)."""

    @property
    def replayable(self) -> bool:
        return self.event_id is not None

    def describe(self) -> str:
        if self.event_type is None:
            return self.action
        event = self.event_id or "(not in the hub's log)"
        waiting = " (still pending in the hub: let it run first)" * (self.event_status == "pending")
        return f"replay {self.event_type} event {event}{waiting}: {self.action}"


@dataclass(frozen=True)
class Drift:
    """One disagreement: ``ids`` maps each system to the ids of the objects involved there."""

    kind: DriftKind
    object: str
    key: str
    ids: dict[str, tuple[str, ...]]
    detail: str
    repair: Repair
    values: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable across runs while the same objects disagree the same way."""
        ids = ";".join(f"{s}={','.join(v)}" for s, v in sorted(self.ids.items()))
        digest = hashlib.sha256(f"{self.kind}|{self.object}|{self.key}|{ids}".encode())
        return f"D-{digest.hexdigest()[:12]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "object": self.object,
            "key": self.key,
            "ids": {s: list(v) for s, v in sorted(self.ids.items())},
            "values": dict(self.values),
            "detail": self.detail,
            "repair": {
                "action": self.repair.action,
                "event_type": self.repair.event_type,
                "event_id": self.repair.event_id,
                "finance_sensitive": self.repair.finance_sensitive,
                "event_status": self.repair.event_status,
                "about": self.repair.about,
                "proposal": self.repair.describe(),
            },
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Drift:
        """The drift ``to_json`` wrote (its id is derived again, so it matches)."""
        repair = raw["repair"]
        return cls(
            DriftKind(raw["kind"]),
            raw["object"],
            raw["key"],
            {s: tuple(v) for s, v in raw["ids"].items()},
            raw["detail"],
            Repair(
                repair["action"],
                repair.get("event_type"),
                repair.get("event_id"),
                bool(repair.get("finance_sensitive")),
                repair.get("about"),
                repair.get("event_status"),
            ),
            dict(raw.get("values") or {}),
        )


@dataclass(frozen=True)
class Report:
    """One run: when, from which cut-off, how much was read per system, and the drifts found."""

    started_at: datetime
    finished_at: datetime
    since: datetime | None
    counts: dict[str, dict[str, int]]
    drifts: tuple[Drift, ...]
    snapshot: Snapshot | None = field(default=None, compare=False, repr=False)
    """What was read, for callers that show totals (the demo's summary); not in the JSON."""

    @property
    def clean(self) -> bool:
        return not self.drifts

    def find(self, drift_id: str) -> Drift | None:
        return next((d for d in self.drifts if d.id == drift_id), None)

    def to_json(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for drift in self.drifts:
            by_kind[drift.kind.value] = by_kind.get(drift.kind.value, 0) + 1
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "counts": self.counts,
            "drift_count": len(self.drifts),
            "by_kind": by_kind,
            "drifts": [d.to_json() for d in self.drifts],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Report:
        """The report ``to_json`` wrote (without the snapshot, which is never kept)."""
        since = raw.get("since")
        return cls(
            datetime.fromisoformat(raw["started_at"]),
            datetime.fromisoformat(raw["finished_at"]),
            datetime.fromisoformat(since) if since else None,
            {k: dict(v) for k, v in raw["counts"].items()},
            tuple(Drift.from_json(d) for d in raw["drifts"]),
        )
