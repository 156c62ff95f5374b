"""Every stored audit entry was signed over ``json.dumps`` text: the shared encoder must give the
very same bytes, or each old signature would stop verifying."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


_TEXT = st.text(st.characters(blacklist_categories=()))  # surrogates too
_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_PLAIN)
def test_the_fast_path_for_plain_values_writes_json_dumps_text(value: object) -> None:
    """Plain values (str, int, bool, None, lists, str-keyed dicts: every step entry) are
    encoded by msgspec; any string (controls, quotes, U+2028, astral, lone surrogates) and any
    int must come out as the very text ``json.dumps`` gives."""
    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    assert canonical_json(value) == expected
