"""How long each event class stays in the store, and which events are never archived."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from quote2cash.engine.replay import is_finance_sensitive
from quote2cash.settings import Settings

FINANCE = "finance"
OTHER = "other"
CLASSES = (FINANCE, OTHER)


def event_class(event_type: str) -> str:
    """``finance`` for the types replay treats as finance-sensitive (invoice, credit memo,
    payment, refund), else ``other``: one classification for approval and retention."""
    return FINANCE if is_finance_sensitive(event_type) else OTHER


@dataclass(frozen=True)
class RetentionPolicy:
    """Days an event stays after its event time, per class (0: forever); ``keep_types`` never
    leave the store (a contract's closed-won deal is looked up by its later events)."""

    finance_days: int = 3650
    other_days: int = 90
    keep_types: frozenset[str] = frozenset({"crm.opportunity.closed_won"})

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        keep = settings.retention_keep_types
        return cls(
            finance_days=settings.retention_finance_days,
            other_days=settings.retention_other_days,
            keep_types=frozenset(t.strip() for t in keep.split(",") if t.strip()),
        )

    def cutoffs(self, now: datetime, before: datetime | None = None) -> dict[str, datetime | None]:
        """Per class, events whose time is before this may be archived (None: the class is
        kept forever). ``before`` only narrows: it never archives an event inside its period."""
        out: dict[str, datetime | None] = {}
        for cls_, days in ((FINANCE, self.finance_days), (OTHER, self.other_days)):
            cutoff = None if days == 0 else now - timedelta(days=days)
            if cutoff is not None and before is not None:
                cutoff = min(cutoff, before)
            out[cls_] = cutoff
        return out

    def archivable_types(self, types: Iterable[str]) -> dict[str, list[str]]:
        """The store's event types by class, without the ones kept forever."""
        out: dict[str, list[str]] = {c: [] for c in CLASSES}
        for t in sorted(set(types)):
            if t not in self.keep_types:
                out[event_class(t)].append(t)
        return out
