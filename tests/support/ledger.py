"""A recording target system for engine tests: side effects keyed by idempotency key."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ledger:
    """Stands for an external system that honours idempotency keys (like Stripe)."""

    rows: dict[str, tuple[str, int]] = field(default_factory=dict)
    order: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    calls: int = 0

    def write(self, key: str, subject: str, sequence: int) -> dict[str, Any]:
        self.calls += 1
        if key not in self.rows:
            self.rows[key] = (subject, sequence)
            self.order[subject].append(sequence)
        return {"key": key, "n": len(self.rows)}
