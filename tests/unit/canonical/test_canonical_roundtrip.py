"""Every canonical model survives JSON and Python round trips exactly, amounts as strings."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from quote2cash.canonical import (
    MINOR_UNITS,
    Address,
    Amendment,
    CreditMemo,
    Customer,
    Invoice,
    LegalEntity,
    Order,
    Payment,
    PricePlan,
    Product,
    Ref,
    Subscription,
    UsageRecord,
)
from unit.canonical.canonical_strategies import EVERY_MODEL

_MODELS = (
    Address,
    Amendment,
    CreditMemo,
    Customer,
    Invoice,
    LegalEntity,
    Order,
    Payment,
    PricePlan,
    Product,
    Ref,
    Subscription,
    UsageRecord,
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _json_numbers(node: Any, path: str = "") -> list[str]:
    """Paths of JSON numbers that are not plain integers counts (floats anywhere are a bug)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _json_numbers(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _json_numbers(v, f"{path}[{i}]")]
    if isinstance(node, float):
        return [path]
    return []


def _money_nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if set(node) == {"amount", "currency"} else []
        return found + [m for v in node.values() for m in _money_nodes(v)]
    if isinstance(node, list):
        return [m for v in node for m in _money_nodes(v)]
    return []


@pytest.mark.parametrize("name", sorted(EVERY_MODEL))
@FAST
@given(data=st.data())
def test_json_round_trip_is_exact(name: str, data: st.DataObject) -> None:
    record: BaseModel = data.draw(EVERY_MODEL[name])
    text = record.model_dump_json()

    again = type(record).model_validate_json(text)

    assert again == record
    assert again.model_dump_json() == text
    parsed = json.loads(text)
    assert _json_numbers(parsed) == []
    for node in _money_nodes(parsed):
        assert isinstance(node["amount"], str)
        decimals = node["amount"].partition(".")[2]
        assert len(decimals) == MINOR_UNITS[node["currency"]], node


@pytest.mark.parametrize("name", sorted(EVERY_MODEL))
@FAST
@given(data=st.data())
def test_python_dump_and_pickle_round_trip(name: str, data: st.DataObject) -> None:
    record: BaseModel = data.draw(EVERY_MODEL[name])

    assert type(record).model_validate(record.model_dump()) == record
    assert pickle.loads(pickle.dumps(record)) == record


def test_records_are_frozen() -> None:
    from quote2cash.canonical import Customer

    customer = Customer(name="Acme")
    with pytest.raises(ValueError, match="frozen"):
        customer.name = "Other"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(EVERY_MODEL))
def test_json_schema_shows_money_as_string_amounts(name: str) -> None:
    model = {m.__name__: m for m in _MODELS}[name]
    schema = json.dumps(model.model_json_schema(mode="serialization"))
    assert '"type": "number"' not in schema
    if name in {"Invoice", "Order", "Payment", "CreditMemo"}:
        assert '"amount": {"pattern"' in schema


def test_public_names_are_exported() -> None:
    import quote2cash.canonical as canonical

    assert sorted(canonical.__all__) == sorted(set(canonical.__all__))
    for name in canonical.__all__:
        assert getattr(canonical, name) is not None
