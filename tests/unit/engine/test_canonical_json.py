"""Every stored audit entry was signed over ``json.dumps`` text: the shared encoder must give the
very same bytes, or each old signature would stop verifying."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from quote2cash.engine.audit import canonical_json

VALUES = [
    {"b": 1, "a": 'é\u2028"quoted"', "c": [1, 2.5, None, True, -0.0, 1e300]},
    {"amount": Decimal("12.50"), "at": datetime(2026, 12, 6, 9, 30, tzinfo=UTC)},
    {"nested": {"z": {"y": [{"x": 1, "w": 2}]}}, "": "empty key", "10": 1, "9": 2},
    {"nan": float("nan"), "inf": float("inf")},
    {},
    [],
    "text",
]


@pytest.mark.parametrize("value", VALUES)
def test_canonical_json_is_the_text_entries_were_signed_over(value: object) -> None:
    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    assert canonical_json(value) == expected
